"""A user watches a failover under ``fogmesh up``: the convolver's node is killed (agent and
workloads, SIGKILL) and revived with ``fogmesh fleet``; the fleet stays up, the convolver is
re-placed on the third node, and the sample app's outputs continue after the kill and after
the revive. Before, the agent's death ended the fleet ("error: agent-edge-1 exited")."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import aiomqtt
import pytest

from tests.e2e.fleet import OutputReader, leftovers, read_env, wait_for_file
from tests.support.buses import eventually

FOGMESH = str(Path(sys.executable).parent / "fogmesh")
NODES = ["edge-1", "edge-2", "edge-3"]


class Outputs:
    """Counts the sample app's ``out`` messages, as a user's subscriber would see them."""

    def __init__(self) -> None:
        self.count = 0

    async def follow(self, env: dict[str, str]) -> None:
        async with aiomqtt.Client(
            "127.0.0.1",
            int(env["FOGMESH_PORT"]),
            username=env["FOGMESH_USERNAME"],
            password=env["FOGMESH_PASSWORD"],
            identifier="e2e-failover-subscriber",
        ) as client:
            await client.subscribe("fm/v1/data/demo/sensor-app/out", qos=1)
            async for _message in client.messages:
                self.count += 1

    async def more(self, than: int, what: str) -> None:
        """Wait until a few more outputs than ``than`` have arrived."""
        await eventually(lambda: self.count >= than + 3, timeout=90, what=what)


async def _fleet_cli(env: dict[str, str], *args: str) -> str:
    done = await asyncio.to_thread(
        subprocess.run,
        [FOGMESH, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **env},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


async def _seen(out: OutputReader, pattern: str, proc: subprocess.Popen[str]) -> re.Match[str]:
    """Wait for a line of ``fogmesh up``'s output matching ``pattern``; the fleet must live."""

    def found() -> bool:
        assert proc.poll() is None, f"fogmesh up exited ({proc.returncode}):\n{out.text()}"
        return re.search(pattern, out.text()) is not None

    await eventually(found, timeout=120, what=f"{pattern!r} in:\n{out.text()}")
    match = re.search(pattern, out.text())
    assert match is not None
    return match


# a `fogmesh up` fleet of nodes edge-1..3, run one at a time with the other fleets (the
# dashboard's too); `leftovers` counts only this fleet's containers (by its fogmesh.fleet label),
# so another test's container of a node also named edge-1 is not taken for one of them
@pytest.mark.xdist_group("fogmesh-up-fleets")
@pytest.mark.timeout(420)
async def test_a_killed_and_revived_node_does_not_stop_the_fleet(tmp_path: Path) -> None:
    state = tmp_path / "fleet"
    argv = [FOGMESH, "up", "--nodes", "3", "--runtime", "native", "--state-dir", str(state)]
    fleet = subprocess.Popen(
        [*argv, "--no-live"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "COLUMNS": "250"},  # the placements on one line, unwrapped
    )
    out = OutputReader(fleet)
    outputs = Outputs()
    subscriber: asyncio.Task[None] | None = None
    try:
        await asyncio.to_thread(out.wait_for, "deployed sensor-app", 180, fleet)
        placed = re.search(r"sensor-app-convolve-0 on (edge-\d+)", out.text())
        assert placed, out.text()
        victim = placed.group(1)
        wait_for_file(state / "fleet.env", 10)
        env = read_env(state / "fleet.env")
        assert env["FOGMESH_FLEET_DIR"] == str(state.resolve())
        subscriber = asyncio.create_task(outputs.follow(env))
        await outputs.more(0, "outputs before the kill")

        said = await _fleet_cli(env, "fleet", "kill", victim)
        assert f"killed {victim}" in said, said
        moved = await _seen(
            out, rf"event: workload-replaced sensor-app-convolve-0: {victim} -> (edge-\d+)", fleet
        )
        assert moved.group(1) != victim
        await outputs.more(outputs.count, "outputs after the kill")
        listed = await _fleet_cli(env, "workloads", "--app", "sensor-app")
        assert moved.group(1) in listed, listed

        said = await _fleet_cli(env, "fleet", "revive", victim)
        assert f"started the agent of {victim} again" in said, said
        await _seen(out, rf"event: node-back {victim}", fleet)
        await outputs.more(outputs.count, "outputs after the revive")
        assert fleet.poll() is None, out.text()

        fleet.send_signal(signal.SIGINT)  # Ctrl-C
        assert await asyncio.to_thread(fleet.wait, 120) == 0, out.text()
    finally:
        if subscriber is not None:
            subscriber.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await subscriber
        if fleet.poll() is None:
            fleet.kill()
            fleet.wait()
    assert f"agent-{victim} exited" not in out.text()  # the kill was told once, as a kill
    assert leftovers(state, NODES) == []
