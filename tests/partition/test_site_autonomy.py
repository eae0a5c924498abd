"""A site cut off from the cloud moves a dead node's workload to a peer of its own.

The fleet of ``test_unreachable`` (cloud broker, registry and scheduler in one network
namespace; site-a's broker and two real agents in the other, heartbeat 2 s) plus site-a's own
migrator in site mode on the site broker. A native app runs at the site: ``solo`` (one replica,
anywhere) and ``pinned`` (pinned to ``edge-1``). The WAN is cut silently; once the cloud shows the
site unreachable, the agent of ``solo``'s node and that node's workloads are SIGKILLed (a node's
death):

- during the cut, ``solo`` runs again on the other site node, started by the site's migrator
  (the cloud cannot reach the site), and a pinned workload of the dead node is not moved;
- after the heal the scheduler's record places ``solo`` on that node (it adopted the site's
  move), nothing is re-placed again, and exactly one ``solo`` process runs; ``pinned`` is
  never moved to the peer.

Skipped without root or ``ip netns``, except with ``CI=true``, where it fails instead.
"""

from __future__ import annotations

import os
import secrets
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from fogmesh.cli.fleet.plan import TENANT
from tests.partition.cut_fleet import APP, SITE_NODES, CutFleet, site_migrator
from tests.partition.workloads import marked, sleeper
from tests.support.buses import eventually
from tests.support.netns import NsPair

__all__ = ["running", "site_migrator"]  # bench/partition_agents.py imports them from here

pytestmark = pytest.mark.netns


def manifest(token: str) -> dict[str, Any]:
    """``solo`` anywhere and ``pinned`` on edge-1; ``token`` marks their processes."""

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
        "components": [comp("solo"), comp("pinned", placement={"node": "edge-1"})],
    }


def running(token: str, component: str) -> dict[int, str]:
    """The live processes of ``component`` (pid: the node whose agent started it)."""
    return {w.pid: w.node for w in marked(f"{token}-{component}")}


async def test_a_cut_site_moves_a_dead_nodes_workload_to_its_peer(
    tmp_path: Path, pair: NsPair
) -> None:
    fleet = CutFleet(tmp_path / "fleet", pair)
    token = f"fm-autonomy-{secrets.token_hex(4)}"

    def look() -> dict[str, Any]:
        return fleet.probe("look")

    def nodes_are(state: str, nodes: tuple[str, ...] = SITE_NODES) -> bool:
        seen = look()
        return all(seen.get("nodes", {}).get(n) == state for n in nodes)

    try:
        fleet.start_all()
        site_migrator(fleet)
        await eventually(lambda: nodes_are("online"), 120, "both site nodes online")
        deployed = fleet.deploy(manifest(token))
        assert "error" not in deployed, f"{deployed}\n{fleet.logs()}"
        placed = deployed["placements"]
        dead = placed[f"{APP}-solo-0"]
        peer = next(n for n in SITE_NODES if n != dead)
        await eventually(
            lambda: len(running(token, "solo")) == 1 and len(running(token, "pinned")) == 1,
            120,
            "both workloads running",
        )

        pair.cut()
        await eventually(lambda: nodes_are("unreachable"), 90, "the site nodes unreachable")
        # the node's death: its agent, then the workloads it ran
        fleet.children[f"agent-{dead}"].signal_group(signal.SIGKILL)
        for component in ("solo", "pinned"):
            for pid, node in running(token, component).items():
                if node == dead:
                    os.kill(pid, signal.SIGKILL)
        killed_at = time.monotonic()
        await eventually(
            lambda: set(running(token, "solo").values()) == {peer},
            60,
            f"solo running on {peer} during the cut\n{fleet.logs()}",
        )
        print(f"moved by the site in {time.monotonic() - killed_at:.1f}s")
        seen = look()
        assert seen.get("placements", {}).get(f"{APP}-solo-0") == dead, seen  # the cloud: cut
        pinned = running(token, "pinned")
        assert dead != "edge-1" or not pinned, f"a pinned workload moved: {pinned}"

        pair.heal()

        def adopted() -> bool:
            seen = look()
            return bool(seen.get("placements", {}).get(f"{APP}-solo-0") == peer)

        await eventually(adopted, 90, f"the cloud places solo on {peer}\n{fleet.logs()}")
        settle = time.monotonic()
        while time.monotonic() - settle < 15:  # the scheduler's heal settle and a few beats
            seen = look()
            assert seen.get("placements", {}).get(f"{APP}-solo-0") == peer, seen
            solo = running(token, "solo")
            assert list(solo.values()) == [peer], solo
        # pinned to the dead edge-1: the site left it there; the cloud holds it pending
        assert seen["placements"][f"{APP}-pinned-0"] in (None, "edge-1"), seen
        assert seen["nodes"].get(dead) == "offline", seen
        assert seen["nodes"].get(peer) == "online", seen
    finally:
        fleet.stop()
