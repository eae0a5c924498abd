"""A user watches a failover under ``fogmesh up``: the convolver's node is killed (agent and
workloads, SIGKILL) and revived with ``fogmesh fleet``; the fleet stays up, the convolver is
re-placed on the third node, and the sample app's outputs continue after the kill and after
the revive. Before, the agent's death ended the fleet ("error: agent-edge-1 exited")."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from tests.e2e.fleet import NODES, Outputs, fleet_ok, fogmesh_up, leftovers


# a `fogmesh up` fleet of nodes edge-1..3, run one at a time with the other fleets (the
# dashboard's too); `leftovers` counts only this fleet's containers (by its fogmesh.fleet label),
# so another test's container of a node also named edge-1 is not taken for one of them
@pytest.mark.xdist_group("fogmesh-up-fleets")
@pytest.mark.timeout(420)
async def test_a_killed_and_revived_node_does_not_stop_the_fleet(tmp_path: Path) -> None:
    state = tmp_path / "fleet"
    outputs = Outputs("e2e-failover-subscriber")
    async with fogmesh_up(state, "--nodes", "3", "--runtime", "native") as fleet:
        env = await asyncio.to_thread(fleet.deployed)
        placed = re.search(r"sensor-app-convolve-0 on (edge-\d+)", fleet.text())
        assert placed, fleet.text()
        victim = placed.group(1)
        assert env["FOGMESH_FLEET_DIR"] == str(state.resolve())
        fleet.background(outputs.follow(env))
        await outputs.more(0, "outputs before the kill")

        said = await asyncio.to_thread(fleet_ok, env, "fleet", "kill", victim)
        assert f"killed {victim}" in said, said
        moved = await asyncio.to_thread(
            fleet.wait_match,
            rf"event: workload-replaced sensor-app-convolve-0: {victim} -> (edge-\d+)",
            120,
        )
        assert moved.group(1) != victim
        await outputs.more(outputs.count, "outputs after the kill")
        listed = await asyncio.to_thread(fleet_ok, env, "workloads", "--app", "sensor-app")
        assert moved.group(1) in listed, listed

        said = await asyncio.to_thread(fleet_ok, env, "fleet", "revive", victim)
        assert f"started the agent of {victim} again" in said, said
        await asyncio.to_thread(fleet.wait_match, rf"event: node-back {victim}", 120)
        await outputs.more(outputs.count, "outputs after the revive")
        await fleet.ctrl_c()  # Ctrl-C
    assert f"agent-{victim} exited" not in fleet.text()  # the kill was told once, as a kill
    assert leftovers(state, NODES) == []
