"""Shared bits of the benchmarks: percentiles, result files, brokers to measure against."""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

RESULTS = REPO / "bench" / "results"

__all__ = ["REPO", "RESULTS", "load_average", "read_result", "summarise", "write_result"]

# what write_result adds to a bench's figures
_STAMP = ("benchmark", "when", "machine")


def load_average() -> list[float]:
    """The machine's 1, 5 and 15 minute load averages (as ``uptime`` prints them): benches
    share the cores with whatever else runs, so each figure carries the load it ran under."""
    return [round(x, 2) for x in os.getloadavg()]


def summarise(samples_s: list[float]) -> dict[str, float]:
    """p50 / p99 / mean in milliseconds of samples given in seconds."""
    ordered = sorted(samples_s)
    n = len(ordered)

    def pct(p: float) -> float:
        return ordered[min(n - 1, round(p / 100 * (n - 1)))] * 1000

    return {
        "n": n,
        "p50_ms": round(pct(50), 3),
        "p99_ms": round(pct(99), 3),
        "mean_ms": round(statistics.fmean(ordered) * 1000, 3),
    }


def write_result(name: str, payload: dict[str, Any]) -> Path:
    """Write ``bench/results/{name}.json`` with the machine it ran on."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {
        "benchmark": name,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_average": load_average(),
        },
        **payload,
    }
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


def read_result(name: str) -> dict[str, Any]:
    """The figures ``bench/results/{name}.json`` holds, without what ``write_result`` added to
    them (an empty dict when there is no such file yet): what a run merges its own into."""
    path = RESULTS / f"{name}.json"
    if not path.exists():
        return {}
    old: dict[str, Any] = json.loads(path.read_text())
    return {k: v for k, v in old.items() if k not in _STAMP}
