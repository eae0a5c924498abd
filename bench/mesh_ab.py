"""The mesh bench's A/B mode (``--base DIR``): this tree's link and another tree's in
alternating rounds, Mosquitto's own bridge once per round, medians of each side in
``bench/results/mesh-ab.json``."""

from __future__ import annotations

import contextlib
import os
import statistics
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mesh_measure import bench_end
from mesh_report import write_results

__all__ = ["AB_FIGURES", "ab", "link_tree"]

AB_FIGURES = (
    "hop_ratio",
    "hop_p50_ms",
    "direct_p50_ms",
    "burst_msgs_per_s",
    "burst_site_cpu_us_per_msg",
    "drain_msgs_per_s",
    "drain_site_cpu_us_per_msg",
)


@contextlib.contextmanager
def link_tree(tree: Path | None) -> Iterator[None]:
    """Processes started in the block run ``tree``'s broker package (None: this tree's)."""
    if tree is None:
        yield
        return
    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str((tree / "broker" / "src").resolve()), *([before] if before else [])]
    )
    try:
        yield
    finally:
        if before is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = before


async def ab(base: Path, kind: str, rounds: int, partition: float, n_tput: int) -> None:
    """``kind`` with this tree's link and ``base``'s, alternating (the order flips each round),
    with Mosquitto's own bridge (the peer) once per round; medians of each side."""
    runs: dict[str, list[dict[str, Any]]] = {"current": [], "base": [], "peer": []}
    load = [os.getloadavg()]
    for r in range(rounds):
        order = [("current", None), ("base", base)]
        for name, tree in order if r % 2 == 0 else order[::-1]:
            with tempfile.TemporaryDirectory(prefix=f"fm-bench-{kind}-") as tmp, link_tree(tree):
                runs[name].append(await bench_end(kind, Path(tmp), partition, n_tput))
            print(name, {k: round(runs[name][-1][k], 2) for k in AB_FIGURES}, flush=True)
        with tempfile.TemporaryDirectory(prefix="fm-bench-peer-") as tmp:
            runs["peer"].append(await bench_end("peer", Path(tmp), partition, n_tput))
        print("peer", {k: round(runs["peer"][-1][k], 2) for k in AB_FIGURES}, flush=True)
        load.append(os.getloadavg())
    medians = {
        name: {k: statistics.median(x[k] for x in got) for k in AB_FIGURES}
        for name, got in runs.items()
    }
    for name, figures in medians.items():
        print(f"{name:8} median of {rounds}:", {k: round(v, 2) for k, v in figures.items()})
    out = write_results(
        {"kind": kind, "base": str(base), "rounds": rounds, "load_average": load,
         "medians": medians, "runs": runs},
        "mesh-ab",
    )  # fmt: skip
    print(f"load average {load[0]} -> {load[-1]}; wrote {out}")
