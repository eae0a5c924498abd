"""The partition bench's part with real agents: a node dies while its site is cut off.

``tests/partition``'s fleet (cloud broker, registry and scheduler in one network namespace;
site-a's broker, its migrator in site mode and two real agents in the other; heartbeat 2 s,
K = 3) runs a native app: ``solo`` (one replica), ``pinned`` (on edge-1) and ``spread`` (two
replicas, one per node). The WAN is cut silently; once the cloud shows the site unreachable,
``solo``'s node dies (its agent and its workloads SIGKILLed). Measured:

- ``site_local_migration_s``: from the death to ``solo`` running on the site's other node,
  placed there by the site's own migrator;
- ``workloads_evicted``: workloads of the node that stayed alive stopped or moved from the cut
  to the end (process gone or changed), plus placements the cloud changed during the cut;
- ``site_move_adopted_s``: from the heal to the scheduler's record placing ``solo`` where the
  site put it; ``solo_copies_after_heal``: ``solo`` processes running once settled (must be 1).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from fogmesh.cli.fleet.plan import TENANT
from tests.partition.test_cut_cycles import Prober
from tests.partition.test_site_autonomy import running, site_migrator
from tests.partition.test_unreachable import SITE_NODES, CutFleet
from tests.partition.workloads import sleeper
from tests.support.netns import ns_pair

__all__ = ["site_autonomy"]

APP = "keep"  # the name the probe asks the scheduler about
SOLO = f"{APP}-solo-0"


def _manifest(token: str) -> dict[str, Any]:
    def comp(name: str, **extra: Any) -> dict[str, Any]:
        return {
            "name": name,
            "runtime": "native",
            "executable": sys.executable,
            "command": sleeper(f"{token}-{name}"),
            "requests": {"cpu": "50m", "memory": "32Mi"},
            **extra,
        }

    return {
        "name": APP,
        "tenant": TENANT,
        "components": [
            comp("solo"),
            comp("pinned", placement={"node": "edge-1"}),
            comp("spread", replicas=2, anti_affinity=["spread"]),
        ],
    }


def _until(what: str, timeout: float, check: Any) -> float:
    """Poll ``check()`` until true; returns when (monotonic); raises after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"not within {timeout:g}s: {what}")
        time.sleep(0.1)
    return time.monotonic()


def _pids(token: str, node: str) -> dict[int, str]:
    """The workload processes ``node``'s agent started (pid: component)."""
    return {
        pid: comp
        for comp in ("solo", "pinned", "spread")
        for pid, where in running(token, comp).items()
        if where == node
    }


def site_autonomy(cut_s: float = 25.0) -> dict[str, Any]:
    """Run the part; returns its figures."""
    root = Path(tempfile.mkdtemp(prefix="fm-partition-agents-"))
    token = f"fm-bench-{secrets.token_hex(4)}"
    with ns_pair() as pair:
        fleet = CutFleet(root / "fleet", pair)
        prober: Prober | None = None
        try:
            fleet.start_all()
            site_migrator(fleet)
            prober = Prober(fleet)
            look = prober.ask

            def states_are(state: str) -> bool:
                nodes = look("look").get("nodes", {})
                return all(nodes.get(n) == state for n in SITE_NODES)

            _until("both site nodes online", 120, lambda: states_are("online"))
            path = root / "manifest.json"
            path.write_text(json.dumps(_manifest(token)))
            deployed = fleet.probe("deploy", "--manifest", str(path))
            if "error" in deployed:
                raise RuntimeError(f"deploy: {deployed}")
            placed: dict[str, str] = deployed["placements"]
            dead = placed[SOLO]
            peer = next(n for n in SITE_NODES if n != dead)
            counts = {"solo": 1, "pinned": 1, "spread": 2}
            _until("every workload running", 120,
                   lambda: all(len(running(token, c)) == n for c, n in counts.items()))  # fmt: skip
            survivors = _pids(token, peer)

            pair.cut()
            cut_at = time.monotonic()
            _until("the site unreachable", 90, lambda: states_are("unreachable"))
            fleet.children[f"agent-{dead}"].signal_group(signal.SIGKILL)
            for pid in _pids(token, dead):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            killed_at = time.monotonic()
            moved_at = _until(
                "solo on the peer", 60, lambda: set(running(token, "solo").values()) == {peer}
            )
            replaced_by_cloud = 0
            while time.monotonic() - cut_at < cut_s:
                now = look("look").get("placements", {})
                replaced_by_cloud = max(
                    replaced_by_cloud, sum(1 for w, n in now.items() if placed.get(w) != n)
                )
                time.sleep(0.5)
            pair.heal()
            healed_at = time.monotonic()
            adopted_at = _until(
                "the cloud places solo where the site did", 90,
                lambda: look("look").get("placements", {}).get(SOLO) == peer,
            )  # fmt: skip
            time.sleep(15.0)  # the scheduler's settle after the heal, and a few heartbeats
            gone = [pid for pid in survivors if pid not in _pids(token, peer)]
            final = look("look")
            return {
                "site_local_migration_s": round(moved_at - killed_at, 2),
                "site_local_cut_s": round(healed_at - cut_at, 1),
                "workloads_evicted": len(gone) + replaced_by_cloud,
                "workloads_evicted_note": f"of the {len(survivors)} workloads of the node that"
                " stayed alive, stopped or moved from the cut to 15 s after the heal, plus"
                " placements the cloud changed during the cut",
                "site_move_adopted_s": round(adopted_at - healed_at, 2),
                "solo_copies_after_heal": len(running(token, "solo")),
                "placements_after_heal": final.get("placements"),
            }
        finally:
            if prober is not None:
                prober.close()
            fleet.stop()
