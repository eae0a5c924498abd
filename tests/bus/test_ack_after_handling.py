"""QoS 1 messages are acknowledged only once handled: a SIGKILLed service gets its queue again.

Run on the embedded broker (``python -m fogmesh.broker``: amqtt with fogmesh's fixes; bare
amqtt 0.12 itself drops what is in flight to a connection that dies, see
``fogmesh.broker.qos1fix``) and on Mosquitto.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from fogmesh.bus import Bus, BusConfig
from fogmesh.protocol import topics
from tests.support.brokers import REPO, BrokerProcess
from tests.support.buses import eventually, unique
from tests.support.mesh import MeshProcess, start_alone
from tests.support.mesh_file import PASSWORDS
from tests.support.processes import kill

COUNT = 10


@dataclass(frozen=True)
class Endpoint:
    """Where a test client connects, and as whom."""

    port: int
    username: str
    password: str | None

    def config(self, client_id: str) -> BusConfig:
        return BusConfig(
            port=self.port,
            client_id=client_id,
            username=self.username,
            password=self.password,
            reconnect_base=0.1,
            reconnect_cap=1.0,
            keepalive=5,
        )


@pytest.fixture(params=["embedded", "mosquitto"])
def endpoint(
    request: pytest.FixtureRequest, tmp_path: Path, procs: list[MeshProcess]
) -> Iterator[Endpoint]:
    """The embedded fogmesh broker (as the service account) or a plain Mosquitto."""
    if request.param == "mosquitto":
        mosquitto = BrokerProcess("mosquitto", tmp_path / "mosquitto").start()
        yield Endpoint(mosquitto.port, "svc", None)
        mosquitto.stop()
        return
    embedded, port = start_alone(tmp_path, procs, "a")
    yield Endpoint(port, "svc", PASSWORDS["svc"])
    embedded.stop()


@contextmanager
def slow_service(
    at: Endpoint, client_id: str, topic: str, out: Path, delay: float
) -> Iterator[subprocess.Popen[bytes]]:
    """The slow-handler service of ``tests/bus/slow_service.py`` as a child process."""
    cmd = [sys.executable, "-m", "tests.bus.slow_service", str(at.port), client_id, topic]
    cmd += [str(out), str(delay), at.username, at.password or ""]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE)
    try:
        yield proc
    finally:
        kill(proc)


async def _ready(proc: subprocess.Popen[bytes]) -> None:
    assert proc.stdout is not None
    async with asyncio.timeout(30):
        line = await asyncio.to_thread(proc.stdout.readline)
    assert line.strip() == b"ready", line


def _handled(out: Path) -> list[str]:
    return out.read_text().split() if out.exists() else []


async def test_messages_queued_behind_a_slow_handler_survive_a_sigkill(
    endpoint: Endpoint, tmp_path: Path
) -> None:
    client_id, out = unique("slow"), tmp_path / "handled.txt"
    topic = topics.data("acme", unique("app"), "in")
    with slow_service(endpoint, client_id, topic, out, delay=2.0) as first:
        await _ready(first)
        async with Bus(endpoint.config(unique("sender"))) as sender:
            await sender.wait_connected(timeout=15)
            for n in range(COUNT):
                await sender.publish_raw(topic, str(n).encode(), qos=1)
        await eventually(lambda: len(_handled(out)) >= 2, timeout=60, what="two handled")
        first.kill()  # SIGKILL: the rest were delivered to it, queued, not yet handled
    assert len(set(_handled(out))) < COUNT
    with slow_service(endpoint, client_id, topic, out, delay=0.0) as second:
        await _ready(second)
        expected = {str(n) for n in range(COUNT)}
        await eventually(lambda: set(_handled(out)) == expected, timeout=60, what="all handled")
    # again only what was unacknowledged at the kill: the one being handled, perhaps the one
    # before it (its PUBACK may not have left), and the queued rest
    assert len(_handled(out)) <= COUNT + 2
