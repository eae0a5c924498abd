"""A cut WAN is not a death: a site cut off silently is unreachable, and nothing is evicted.

In two network namespaces joined by a veth pair (``tests.support.netns``): the cloud broker,
the registry and the scheduler in ``fmt-{tag}-cloud``; the site broker ``site-a`` with its link
(keepalive 5 s) and two real agents in ``fmt-{tag}-site``, everything from ``fogmesh up``'s plan
and started with its documented command. A native app runs on the site's nodes: two replicas
one per node, and one pinned to ``edge-1``. The veth is cut silently (netem loss, or nftables
drops) for longer than the liveness timeout (3 heartbeats of 2 s), then healed:

- while cut the registry shows both site nodes ``unreachable`` (never ``offline``), the
  scheduler keeps every placement where it was (nothing re-placed, nothing removed), and the
  site's workload processes keep running (the same pids);
- after the heal both nodes are ``online`` again, with the same placements and the same pids.

The test reads the cloud through ``tests.partition.probe`` run inside the cloud's namespace.
Skipped without root or ``ip netns``, except with ``CI=true``, where it fails instead.
"""

from __future__ import annotations

import secrets
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from fogmesh.cli.fleet.plan import TENANT
from tests.partition.cut_fleet import APP, SITE_NODES, CutFleet
from tests.partition.workloads import marked, sleeper
from tests.support.buses import eventually
from tests.support.netns import NsPair

__all__ = ["SITE_NODES", "CutFleet"]  # bench/partition_agents.py imports them from here

pytestmark = pytest.mark.netns


def manifest(token: str) -> dict[str, Any]:
    """Two replicas, one per site node, and one pinned to edge-1; ``token`` marks their
    processes so the test can find them."""
    common = {
        "runtime": "native",
        "executable": sys.executable,
        "command": sleeper(token),
        "requests": {"cpu": "50m", "memory": "32Mi"},
    }
    return {
        "name": APP,
        "tenant": TENANT,
        "components": [
            {"name": "spread", **common, "replicas": 2, "anti_affinity": ["spread"]},
            {"name": "pinned", **common, "placement": {"node": "edge-1"}},
        ],
    }


def pids(token: str) -> set[int]:
    """The running processes the app's workloads are (found by ``token``)."""
    return {w.pid for w in marked(token)}


async def test_a_cut_site_is_unreachable_and_nothing_is_evicted(
    tmp_path: Path, pair: NsPair
) -> None:
    fleet = CutFleet(tmp_path / "fleet", pair)
    token = f"fm-partition-{secrets.token_hex(4)}"
    looks: list[dict[str, Any]] = []

    def look() -> dict[str, Any]:
        seen = fleet.probe("look")
        looks.append(seen)
        return seen

    def nodes_are(state: str) -> bool:
        seen = look()
        return all(seen.get("nodes", {}).get(n) == state for n in SITE_NODES)

    try:
        fleet.start_all()
        await eventually(lambda: nodes_are("online"), 120, "both site nodes online")
        deployed = fleet.deploy(manifest(token))
        assert "error" not in deployed, f"{deployed}\n{fleet.logs()}"
        placed = deployed["placements"]
        assert sorted(placed.values()) == ["edge-1", "edge-1", "edge-3"], placed
        await eventually(lambda: len(pids(token)) == 3, 120, "the three workloads running")
        before = pids(token)

        method = pair.cut()
        print("cut:", method)
        cut_at = time.monotonic()
        await eventually(lambda: nodes_are("unreachable"), 90, "the site nodes unreachable")
        print(f"unreachable after ~{time.monotonic() - cut_at:.1f}s")
        # stay cut well past the liveness timeout (3 x 2 s) and the scheduler's
        while time.monotonic() - cut_at < 25:
            seen = look()
            states = [seen.get("nodes", {}).get(n) for n in SITE_NODES]
            assert "offline" not in states, f"{seen}\n{fleet.logs()}"
            if "placements" in seen:
                assert seen["placements"] == placed, f"re-placed during the cut: {seen}"
        assert pids(token) == before, "a site workload stopped during the cut"

        pair.heal()
        healed_at = time.monotonic()
        await eventually(lambda: nodes_are("online"), 120, "the site nodes online after the heal")
        print(f"online again ~{time.monotonic() - healed_at:.1f}s after the heal")
        settle = time.monotonic()
        while time.monotonic() - settle < 10:  # heartbeats queued through the cut cross now
            seen = look()
            assert seen.get("placements", placed) == placed, f"evicted after the heal: {seen}"
            states = [seen.get("nodes", {}).get(n) for n in SITE_NODES]
            assert "offline" not in states, f"{seen}\n{fleet.logs()}"
        assert pids(token) == before, "a site workload was restarted after the heal"
        states = [s for seen in looks for s in seen.get("nodes", {}).values()]
        assert "offline" not in states
    finally:
        fleet.stop()
