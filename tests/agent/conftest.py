"""Fixtures of the agent tests: a Mosquitto broker, a run label, cleanup of everything made."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from fogmesh.bus import Bus
from tests.agent.support import AgentNode, AgentProc, Probe, docker, remove_native
from tests.support.brokers import BrokerProcess
from tests.support.buses import bus_config, unique
from tests.support.images import build_busybox_image


@pytest.fixture
def run_label() -> str:
    """``fmtest=<unique>``: put on every Docker object the test's agents create."""
    return f"fmtest={unique('ag')}"


@pytest.fixture(scope="session")
def busybox() -> str:
    """The local busybox test image."""
    return build_busybox_image()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[BrokerProcess]:
    """A Mosquitto broker (so ``mosquitto_pub -r`` and the agent share a real broker)."""
    if not (shutil.which("mosquitto") or Path("/usr/sbin/mosquitto").exists()):
        pytest.fail("mosquitto is not installed")
    proc = BrokerProcess("mosquitto", tmp_path / "broker").start()
    yield proc
    proc.stop()


@pytest.fixture
async def agents(tmp_path: Path, run_label: str) -> AsyncIterator[list[AgentProc]]:
    """Agents the test starts; killed, and all their workloads removed, afterwards."""
    started: list[AgentProc] = []
    yield started
    for agent in started:
        agent.kill()
    await asyncio.to_thread(_cleanup_docker, run_label)
    await remove_native(started)


def _cleanup_docker(label: str) -> None:
    ids = docker("ps", "-aq", "--filter", f"label={label}", check=False).split()
    if ids:
        docker("rm", "-f", "-v", *ids, check=False)
    for kind in ("network", "volume"):
        names = docker(kind, "ls", "-q", "--filter", f"label={label}", check=False).split()
        if names:
            docker(kind, "rm", *names, check=False)


@pytest.fixture
async def probe(broker: BrokerProcess) -> AsyncIterator[Probe]:
    """A test bus client on the broker."""
    async with Bus(bus_config(broker, clean_session=True)) as bus:
        await bus.wait_connected(timeout=20)
        yield Probe(bus)
        await asyncio.sleep(0)


@pytest.fixture
def agent_node(
    broker: BrokerProcess, agents: list[AgentProc], probe: Probe, tmp_path: Path, run_label: str
) -> AgentNode:
    """A node of a unique name whose agents keep their state in ``tmp_path / "state"``."""
    return AgentNode(unique("n"), broker, probe, tmp_path / "state", run_label, agents)
