"""The sensor simulator: a ``size`` x ``size`` matrix of readings to ``.../in`` at ``rate`` Hz.

Each message (JSON, QoS 1) is ``{"seq": n, "ts": <unix seconds>, "matrix": [[...], ...]}``; the
readings are a smooth field (a slowly drifting gradient, like a temperature plate) plus noise, in
degrees, rounded to 3 decimals. ``seq`` counts from ``--seq-start`` (default 0).

Readings are produced only while connected: while the broker is away the sensor keeps its clock
and counts the skipped ticks (it does not buffer a backlog of stale readings). With ``--count N``
it stops after N readings have been acknowledged by the broker. Each acknowledged reading is
logged (``acknowledged seq N ts T``, ``T`` exactly as sent), so a test can prove that every one of
them reached the output.
"""

from __future__ import annotations

import argparse
import logging
import math
import random
import sys
import time
from collections.abc import Sequence

import paho.mqtt.client as mqtt

from fogmesh_sample.runtime import MqttRunner, Settings, add_common_arguments, dumps, env
from fogmesh_sample.runtime import settings_from_args as _settings_from_args

__all__ = ["Sensor", "main", "reading"]

log = logging.getLogger("fogmesh_sample.sensor")


def reading(seq: int, size: int, rng: random.Random, ts: float | None = None) -> dict[str, object]:
    """One message: ``seq``, ``ts`` and a ``size`` x ``size`` matrix of simulated readings."""
    phase = seq / 50.0
    matrix = [
        [
            round(
                20.0
                + 5.0 * math.sin(phase + i / 7.0)
                + 3.0 * math.cos(phase / 2.0 + j / 11.0)
                + rng.gauss(0.0, 0.2),
                3,
            )
            for j in range(size)
        ]
        for i in range(size)
    ]
    return {"seq": seq, "ts": time.time() if ts is None else ts, "matrix": matrix}


class Sensor:
    """The tick callback: publish a reading whenever one is due."""

    def __init__(
        self,
        settings: Settings,
        *,
        size: int = 50,
        count: int | None = None,
        seq_start: int = 0,
        seed: int | None = None,
    ) -> None:
        self.settings = settings
        self.topic = settings.topic("in")
        self.size = size
        self.count = count
        self.seq = seq_start
        self.rng = random.Random(seed)
        self.period = 1.0 / settings.rate_hz
        self.next_due = time.monotonic()
        self.pending: list[tuple[mqtt.MQTTMessageInfo, int, float]] = []
        self.published = 0
        self.skipped = 0

    def __call__(self, runner: MqttRunner) -> None:
        now = time.monotonic()
        still = []
        for entry in self.pending:
            if entry[0].is_published():
                log.info("acknowledged seq %d ts %r", entry[1], entry[2])
            else:
                still.append(entry)
        self.pending = still
        if self.count is not None and self.published >= self.count:
            if not self.pending:
                log.info("published and acknowledged %d readings", self.published)
                runner.stop()
            return
        if now < self.next_due:
            return
        # Keep the schedule; after a long stall start afresh rather than bursting.
        self.next_due = max(self.next_due + self.period, now)
        if not runner.connected:
            self.skipped += 1
            return
        ts = time.time()
        message = reading(self.seq, self.size, self.rng, ts)
        info = runner.client.publish(self.topic, dumps(message), qos=1)
        self.pending.append((info, self.seq, ts))
        log.debug("seq %d published (mid %d)", self.seq, info.mid)
        self.seq += 1
        self.published += 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fogmesh-sample-sensor",
        description="Publish size x size matrices of readings to fm/v1/data/{tenant}/{app}/in.",
    )
    add_common_arguments(parser, env())
    parser.add_argument("--size", type=int, default=int(env().get("FM_SIZE", "50")))
    parser.add_argument(
        "--count", type=int, default=None, help="stop after this many acknowledged readings"
    )
    parser.add_argument("--seq-start", type=int, default=0)
    parser.add_argument("--seed", type=int, default=None, help="seed for the simulated noise")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = _settings_from_args(args, "sensor")
    if args.size < 1:
        raise SystemExit("--size must be >= 1")
    sensor = Sensor(
        settings, size=args.size, count=args.count, seq_start=args.seq_start, seed=args.seed
    )
    runner = MqttRunner(settings, tick=sensor, tick_interval=min(0.05, sensor.period / 2))
    runner.install_signal_handlers()
    log.info(
        "publishing %dx%d readings to %s at %g Hz",
        args.size,
        args.size,
        sensor.topic,
        settings.rate_hz,
    )
    code = runner.run()
    log.info(
        "published %d readings, skipped %d ticks while disconnected",
        sensor.published,
        sensor.skipped,
    )
    return code


if __name__ == "__main__":
    sys.exit(main())
