"""The convolver: ``.../in`` -> sliding-window convolution -> ``.../out``.

The paper (section 6) convolves each 50x50 matrix of readings with a window and counts "a total of
5000 floating point multiplications and 2500 floating point additions ... with every set of data".
It does not give the window. 2,500 is the number of cells (50*50), so the counts mean 2
multiplications and 1 addition per output cell: a window of **two taps**. We use the 1x2 window
``KERNEL = [[0.5, 0.5]]`` (the mean of each reading and its right-hand neighbour) with "same" output
size and zero padding past the last column::

    out[i][j] = x[i][j] * k[0][0] + x[i][j+1] * k[0][1]      (x[i][50] = 0.0)

so each of the 2,500 output cells costs exactly 2 multiplications and 1 addition: 5,000 and 2,500
per set, matching the paper exactly. (A "valid" convolution would give 50x49 cells: 4,900 and
2,450; a 2x2 window would give 4 multiplications per cell.) The multiplications against the zero
padding are really performed, so the count is the count of the code, not only of the formula;
``tests/sample_app`` checks it by counting float operations.

:func:`convolve` takes any kh x kw kernel (same size, zero padding below and to the right; in
signal-processing terms this is a cross-correlation, as in most "convolution" layers).

Output on ``.../out`` (JSON)::

    {"seq": n, "ts_in": <sensor ts>, "ts_out": <unix>, "compute_ms": <float>,
     "worker": <client id>, "kernel": [[0.5, 0.5]],
     "ops": {"multiplications": 5000, "additions": 2500},
     "result": {"rows": 50, "cols": 50, "sum": s, "min": a, "max": b, "mean": m},
     "matrix": [[...]]}      # only with --full-result / FM_FULL_RESULT=1
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

import paho.mqtt.client as mqtt

from fogmesh_sample.runtime import MqttRunner, Settings, add_common_arguments, dumps, env
from fogmesh_sample.runtime import settings_from_args as _settings_from_args

__all__ = ["KERNEL", "Convolution", "convolve", "main", "op_counts", "summarize"]

log = logging.getLogger("fogmesh_sample.convolve")

Matrix = Sequence[Sequence[float]]

KERNEL: tuple[tuple[float, ...], ...] = ((0.5, 0.5),)
"""The paper's window as we read it: 1x2, two taps -> 2 multiplications + 1 addition per cell."""


def op_counts(rows: int, cols: int, kernel: Matrix = KERNEL) -> tuple[int, int]:
    """(multiplications, additions) :func:`convolve` performs on a ``rows`` x ``cols`` matrix."""
    taps = sum(len(r) for r in kernel)
    cells = rows * cols
    return cells * taps, cells * (taps - 1)


def convolve(matrix: Matrix, kernel: Matrix = KERNEL) -> list[list[float]]:
    """Slide ``kernel`` over ``matrix``; same output size, zero padding below/right.

    ``out[i][j] = sum(matrix[i+u][j+v] * kernel[u][v])``, the first product starting the sum, so a
    cell costs ``taps`` multiplications and ``taps - 1`` additions (see :func:`op_counts`).
    """
    rows = len(matrix)
    cols = len(matrix[0]) if rows else 0
    if any(len(r) != cols for r in matrix):
        raise ValueError("matrix rows differ in length")
    kh = len(kernel)
    kw = len(kernel[0]) if kh else 0
    if kh == 0 or kw == 0 or any(len(r) != kw for r in kernel):
        raise ValueError("kernel must be a non-empty rectangle")
    zero_row = [0.0] * (cols + kw - 1)
    # Pad once: kw-1 zeros to the right of every row, kh-1 zero rows below.
    padded = [[*row, *([0.0] * (kw - 1))] for row in matrix]
    padded.extend([zero_row] * (kh - 1))
    taps = [(u, v, kernel[u][v]) for u in range(kh) for v in range(kw)]
    (u0, v0, k0), rest = taps[0], taps[1:]
    out: list[list[float]] = []
    for i in range(rows):
        line: list[float] = []
        for j in range(cols):
            acc = padded[i + u0][j + v0] * k0
            for u, v, k in rest:
                acc = acc + padded[i + u][j + v] * k
            line.append(acc)
        out.append(line)
    return out


def summarize(result: Matrix) -> dict[str, float | int]:
    """rows, cols, sum, min, max, mean of a result matrix (what ``.../out`` carries by default)."""
    flat = [float(x) for row in result for x in row]
    rows = len(result)
    cols = len(result[0]) if rows else 0
    total = sum(flat)
    return {
        "rows": rows,
        "cols": cols,
        "sum": total,
        "min": min(flat) if flat else 0.0,
        "max": max(flat) if flat else 0.0,
        "mean": total / len(flat) if flat else 0.0,
    }


@dataclass
class Convolution:
    """The message handler: parse a reading, convolve, publish the result (QoS 1)."""

    settings: Settings
    full_result: bool = False
    processed: int = 0

    def __call__(self, client: mqtt.Client, msg: mqtt.MQTTMessage) -> None:
        if msg.topic != self.settings.topic("in"):
            return
        try:
            reading = json.loads(msg.payload)
            seq = int(reading["seq"])
            ts_in = float(reading["ts"])
            matrix = [[float(x) for x in row] for row in reading["matrix"]]
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("dropping a malformed reading on %s: %s", msg.topic, exc)
            return
        started = time.perf_counter()
        result = convolve(matrix)
        compute_ms = (time.perf_counter() - started) * 1000.0
        rows = len(matrix)
        muls, adds = op_counts(rows, len(matrix[0]) if rows else 0)
        out: dict[str, object] = {
            "seq": seq,
            "ts_in": ts_in,
            "ts_out": time.time(),
            "compute_ms": compute_ms,
            "worker": self.settings.client_id,
            "kernel": [list(r) for r in KERNEL],
            "ops": {"multiplications": muls, "additions": adds},
            "result": summarize(result),
        }
        if self.full_result:
            out["matrix"] = result
        client.publish(self.settings.topic("out"), dumps(out), qos=1)
        self.processed += 1
        log.debug("seq %d convolved in %.2f ms", seq, compute_ms)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fogmesh-sample-convolve",
        description="Convolve each matrix from fm/v1/data/{tenant}/{app}/in, publish to .../out.",
    )
    add_common_arguments(parser, env())
    parser.add_argument(
        "--full-result",
        action="store_true",
        default=env().get("FM_FULL_RESULT", "") in {"1", "true", "yes"},
        help="include the whole result matrix in each output (FM_FULL_RESULT=1)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = _settings_from_args(args, "convolve")
    handler = Convolution(settings, full_result=bool(args.full_result))
    runner = MqttRunner(settings, subscriptions=[(settings.topic("in"), 1)], on_message=handler)
    runner.install_signal_handlers()
    log.info("convolving %s -> %s", settings.topic("in"), settings.topic("out"))
    code = runner.run()
    log.info("processed %d readings", handler.processed)
    return code


if __name__ == "__main__":
    sys.exit(main())
