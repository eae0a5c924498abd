"""``fogmesh up``'s supervision: an agent that dies is a node lost, told once; a core process
that dies ends the fleet; kill and revive act on one node's agent and workloads only."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from fogmesh.cli.errors import CliError
from fogmesh.cli.fleet.control import (
    CONTROL_SOCKET,
    ControlAction,
    ControlRequest,
    ControlServer,
    send_control,
)
from fogmesh.cli.fleet.processes import ProcessSet
from fogmesh.cli.fleet.supervise import NodeSupervisor
from tests.support.buses import eventually

SLEEP = ["-c", "import time; time.sleep(120)"]


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[tuple[ProcessSet, NodeSupervisor, list[str]]]:
    procs = ProcessSet(tmp_path / "logs", marker_env={"FOGMESH_FLEET": "f-test"})
    notes: list[str] = []
    supervisor = NodeSupervisor(procs, "f-test", tmp_path, note=notes.append)
    procs.run("registry", [sys.executable, *SLEEP])
    procs.run("agent-edge-1", [sys.executable, *SLEEP], node="edge-1")
    procs.run("agent-edge-2", [sys.executable, *SLEEP], node="edge-2")
    yield procs, supervisor, notes
    procs.stop_all(timeout=5)


def _workload(root: Path, node: str, started: list[subprocess.Popen[bytes]]) -> None:
    """A native workload as an agent starts it: marked, named, in the node's state dir."""
    cwd = root / "agents" / node / "work"
    cwd.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "FOGMESH_FLEET": "f-test", "FOGMESH_NODE": node}
    started.append(
        subprocess.Popen([sys.executable, *SLEEP], cwd=cwd, env=env, start_new_session=True)
    )


def test_a_dead_agent_is_a_node_lost_not_the_end_of_the_fleet(
    fleet: tuple[ProcessSet, NodeSupervisor, list[str]],
) -> None:
    procs, supervisor, notes = fleet
    agent = procs.agent("edge-1")
    assert agent is not None
    assert agent.proc is not None
    agent.proc.kill()  # `kill -9` by hand, as the user did
    agent.proc.wait(timeout=10)

    supervisor.check()  # before: CliError("agent-edge-1 exited")
    supervisor.check()

    assert len(notes) == 1, notes  # told once
    assert "agent-edge-1 exited (killed by SIGKILL): node edge-1 is lost" in notes[0]
    assert supervisor.agents == {"edge-1": "killed by SIGKILL", "edge-2": "running"}


def test_a_dead_core_process_ends_the_fleet(
    fleet: tuple[ProcessSet, NodeSupervisor, list[str]],
) -> None:
    procs, supervisor, _notes = fleet
    registry = procs.children[0]
    assert registry.proc is not None
    registry.proc.terminate()
    registry.proc.wait(timeout=10)
    with pytest.raises(CliError, match=r"registry exited .* the fleet cannot run without it"):
        supervisor.check()


def test_kill_takes_the_node_and_its_workloads_and_revive_brings_the_agent_back(
    tmp_path: Path, fleet: tuple[ProcessSet, NodeSupervisor, list[str]]
) -> None:
    procs, supervisor, notes = fleet
    started: list[subprocess.Popen[bytes]] = []
    try:
        _workload(tmp_path, "edge-1", started)
        _workload(tmp_path, "edge-2", started)
        first = procs.agent("edge-1")
        assert first is not None
        assert first.proc is not None
        old_pid = first.proc.pid

        said = supervisor.kill("edge-1")

        assert "killed edge-1 (SIGKILL): its agent, 1 workload processes" in said
        assert not first.alive
        started[0].wait(timeout=10)
        assert started[1].poll() is None  # another node's workload lives on
        other = procs.agent("edge-2")
        assert other is not None
        assert other.alive
        supervisor.check()
        assert notes == [said]  # the kill is not told again as a surprise
        with pytest.raises(CliError, match="down already"):
            supervisor.kill("edge-1")

        said = supervisor.revive("edge-1")

        assert "started the agent of edge-1 again" in said
        assert first.alive
        assert first.proc.pid != old_pid
        assert psutil.Process(first.proc.pid).environ()["FOGMESH_FLEET"] == "f-test"
        with pytest.raises(CliError, match="nothing to revive"):
            supervisor.revive("edge-1")
        with pytest.raises(CliError, match="no node edge-9"):
            supervisor.kill("edge-9")
    finally:
        for proc in started:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


async def test_a_silent_kill_stops_the_agent_and_revive_resumes_it(
    fleet: tuple[ProcessSet, NodeSupervisor, list[str]],
) -> None:
    procs, supervisor, _notes = fleet
    agent = procs.agent("edge-2")
    assert agent is not None
    assert agent.proc is not None
    process = psutil.Process(agent.proc.pid)

    supervisor.kill("edge-2", silent=True)
    await eventually(lambda: process.status() == psutil.STATUS_STOPPED, what="stopped")
    supervisor.check()
    assert supervisor.agents["edge-2"] == "stopped"

    supervisor.revive("edge-2")
    await eventually(lambda: process.status() != psutil.STATUS_STOPPED, what="resumed")
    assert agent.alive
    assert supervisor.agents["edge-2"] == "running"


async def test_the_control_socket_answers_and_refuses_bad_requests(tmp_path: Path) -> None:
    asked: list[ControlRequest] = []

    async def handler(request: ControlRequest) -> str:
        asked.append(request)
        if request.node == "edge-9":
            raise CliError("the fleet has no node edge-9", code=2)
        return f"did {request.action.value} {request.node}"

    server = ControlServer(tmp_path, handler)
    assert await server.start()
    try:
        kill = ControlRequest(action=ControlAction.KILL, node="edge-1", silent=True)
        said = await asyncio.to_thread(send_control, tmp_path, kill)
        assert said == "did kill edge-1"
        assert asked == [kill]
        with pytest.raises(CliError, match="no node edge-9") as refused:
            await asyncio.to_thread(
                send_control, tmp_path, ControlRequest(action=ControlAction.REVIVE, node="edge-9")
            )
        assert refused.value.code == 2

        reader, writer = await asyncio.open_unix_connection(tmp_path / CONTROL_SOCKET)
        writer.write(b'{"action": "explode", "node": "edge-1"}\n')
        reply = await asyncio.wait_for(reader.readline(), 10)
        writer.close()
        assert b'"ok":false' in reply
        assert b"bad control request" in reply
        assert len(asked) == 2  # the bad one never reached the handler
    finally:
        await server.close()
    assert not (tmp_path / CONTROL_SOCKET).exists()
    with pytest.raises(CliError, match="no running `fogmesh up`"):
        send_control(tmp_path, ControlRequest(action=ControlAction.REVIVE, node="edge-1"))
