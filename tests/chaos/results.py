"""The chaos run's figures, as ``bench/results/chaos.json`` holds them.

``FOGMESH_CHAOS_RESULTS`` names the file; by default it is ``bench/results/chaos.json``, which a
run overwrites only if it lasted at least as long as the run recorded there (so the short CI run
does not replace a long run's figures); every run also writes its own copy beside its fleet.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections import Counter
from pathlib import Path
from typing import Any

from tests.chaos.ledger import Ledger

__all__ = ["RESULTS", "write_results"]

RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results" / "chaos.json"


def _minutes_recorded(path: Path) -> float:
    try:
        return float(json.loads(path.read_text()).get("minutes", 0))
    except (OSError, ValueError, AttributeError):
        return 0.0


def write_results(
    *,
    seed: int,
    minutes: float,
    faults: Counter[str],
    ledger: Ledger,
    max_output_gap_s: float,
    out: Path,
    wan_cuts: Counter[str] | None = None,
    unsettled: str = "",
) -> dict[str, Any]:
    """Write the figures to ``out`` and to the results file (see above); return them."""
    figures: dict[str, Any] = {
        "seed": seed,
        "minutes": minutes,
        "faults": dict(sorted(faults.items())),
        "wan_cuts": dict(sorted((wan_cuts or Counter()).items())),
        "readings_sent": len(ledger.sent),
        "readings_lost": len(ledger.lost),
        "readings_duplicated": ledger.duplicated,
        "max_output_gap_s": round(max_output_gap_s, 2),
        "fleet_whole_after": not unsettled,
        **({"fleet_not_whole": unsettled[:500]} if unsettled else {}),
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2)},
        "python": platform.python_version(),
    }
    text = json.dumps(figures, indent=2) + "\n"
    out.write_text(text)
    chosen = os.environ.get("FOGMESH_CHAOS_RESULTS")
    target = Path(chosen) if chosen else RESULTS
    if chosen or minutes >= _minutes_recorded(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    return figures
