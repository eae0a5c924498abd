"""Helpers for the registry's tests: run a registry, simulate nodes, ask queries."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import Engine

from fogmesh.bus import Bus, BusConfig, Will
from fogmesh.protocol import (
    Event,
    Heartbeat,
    NodeFacts,
    NodeHello,
    NodeLiveness,
    NodeStateMessage,
    Reply,
    Request,
    Usage,
    topics,
)
from fogmesh.registry import Registry, RegistrySettings
from fogmesh.registry.db import BatchWriter
from fogmesh.registry.ops import Batch
from tests.support.brokers import REPO, BrokerProcess
from tests.support.buses import bus_config, unique
from tests.support.mesh_file import PASSWORDS

__all__ = [
    "USAGE",
    "USAGE_ROW",
    "EventLog",
    "ProcNode",
    "SimNode",
    "ask",
    "pg_url_or_skip",
    "run_registry",
    "svc_config",
    "until",
    "watched_registry",
    "write_at_once",
]

R = TypeVar("R", bound=Reply)


def write_at_once(engines: list[Engine], batches: list[Batch]) -> None:
    """Write each batch through its own engine (two replicas' writers), started together."""
    start = threading.Barrier(len(engines))

    def write(engine: Engine, batch: Batch) -> None:
        start.wait(timeout=30)
        BatchWriter(engine)(batch)

    with concurrent.futures.ThreadPoolExecutor(len(engines)) as pool:
        for done in [pool.submit(write, e, b) for e, b in zip(engines, batches, strict=True)]:
            done.result(timeout=60)


def pg_url_or_skip() -> str:
    """``FOGMESH_TEST_PG_URL``; fail in CI when it is unset, skip elsewhere."""
    url = os.environ.get("FOGMESH_TEST_PG_URL")
    if url:
        return url
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail("FOGMESH_TEST_PG_URL is unset in CI; run .ci/postgres.sh first")
    pytest.skip('FOGMESH_TEST_PG_URL is unset (eval "$(.ci/postgres.sh)")')


@contextlib.asynccontextmanager
async def run_registry(
    broker: BrokerProcess, db_url: str, client_id: str | None = None, **settings: Any
) -> AsyncIterator[Registry]:
    """A registry running in this event loop until the block ends (then cancelled, awaited)."""
    config = bus_config(broker, client_id or unique("registry"))
    registry = Registry(RegistrySettings(bus=config, db_url=db_url, **settings))
    task = asyncio.create_task(registry.run())
    try:
        async with asyncio.timeout(30):
            while not registry.ready.is_set():
                if task.done():
                    task.result()
                await asyncio.sleep(0.02)
        yield registry
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        registry.engine.dispose()


@contextlib.asynccontextmanager
async def watched_registry(
    broker: BrokerProcess, db_url: str, **settings: Any
) -> AsyncIterator[tuple[Bus, EventLog]]:
    """:func:`run_registry` and a connected client of ``broker`` collecting every fleet
    event, for the block."""
    async with run_registry(broker, db_url, **settings), Bus(bus_config(broker)) as client:
        log = EventLog()
        log.attach(client)
        await client.wait_connected(timeout=15)
        yield client, log


async def ask(bus: Bus, tenant: str, path: str, request: Request, model: type[R]) -> R:
    """Send a query to ``fm/v1/api/{tenant}/{path}`` and return its reply."""
    resource, action = path.split("/")
    return await bus.request(topics.api(tenant, resource, action), request, model, timeout=15.0)


def svc_config(port: int, client_id: str) -> BusConfig:
    """A :class:`BusConfig` for a mesh broker or the NATS cluster on ``port``, as the test
    users' service account (``tests.support.mesh_file.PASSWORDS``)."""
    return BusConfig(
        port=port,
        client_id=client_id,
        username="svc",
        password=PASSWORDS["svc"],
        reconnect_base=0.1,
        reconnect_cap=1.0,
        keepalive=5,
    )


def facts(**overrides: Any) -> NodeFacts:
    """Plausible facts of a small node."""
    data: dict[str, Any] = {
        "device_id": "dev",
        "arch": "x86_64",
        "cpu_count": 4,
        "memory_bytes": 8 << 30,
        "disk_bytes": 64 << 30,
    }
    data.update(overrides)
    return NodeFacts.model_validate(data)


USAGE = Usage(
    cpu_percent=12.5,
    memory_used_bytes=3 << 30,
    memory_total_bytes=8 << 30,
    disk_used_bytes=10 << 30,
    disk_total_bytes=64 << 30,
)


USAGE_ROW = {
    "cpu_percent": 1.0,
    "memory_used_bytes": 1,
    "memory_total_bytes": 2,
    "disk_used_bytes": 3,
    "disk_total_bytes": 4,
    "load1": 0.0,
}
"""A node's usage as the writer stores it (a heartbeat op's row)."""


@dataclass
class SimNode:
    """A node agent in this process: hello, state online, heartbeats every ``interval``.

    ``stop_heartbeats`` then leaving the block cleanly is a silent death (no last will).
    """

    broker: BrokerProcess
    node: str
    interval: float = 0.3
    facts: NodeFacts = field(default_factory=facts)
    boot_id: str = field(default_factory=lambda: unique("boot"))
    seq: int = 0
    bus: Bus | None = None
    _beat: asyncio.Task[None] | None = None

    async def __aenter__(self) -> SimNode:
        will = Will(
            topics.node(self.node, "state"),
            NodeStateMessage(node=self.node, state=NodeLiveness.OFFLINE, boot_id=self.boot_id),
        )
        self.bus = await Bus(bus_config(self.broker, unique("agent")), will=will).__aenter__()
        await self.bus.wait_connected(timeout=15)
        await self.bus.publish(
            topics.node(self.node, "hello"),
            NodeHello(node=self.node, facts=self.facts, boot_id=self.boot_id),
            retain=True,
        )
        await self.bus.publish(
            topics.node(self.node, "state"),
            NodeStateMessage(node=self.node, state=NodeLiveness.ONLINE, boot_id=self.boot_id),
            retain=True,
        )
        self.start_heartbeats()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop_heartbeats()
        if self.bus is not None:
            await self.bus.__aexit__(None, None, None)

    def start_heartbeats(self) -> None:
        """Heartbeat every ``interval`` seconds."""
        self._beat = asyncio.create_task(self._heartbeats())

    async def stop_heartbeats(self) -> None:
        """Stop heartbeating (the connection stays up: no last will)."""
        if self._beat is not None:
            self._beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._beat
            self._beat = None

    async def beat(self) -> None:
        """Send one heartbeat."""
        assert self.bus is not None
        hb = Heartbeat(node=self.node, seq=self.seq, interval_s=self.interval, usage=USAGE)
        self.seq += 1
        await self.bus.publish(topics.node(self.node, "heartbeat"), hb, qos=0)

    async def _heartbeats(self) -> None:
        while True:
            await self.beat()
            await asyncio.sleep(self.interval)


class ProcNode:
    """A node agent in a child process, so SIGKILL makes the broker publish its last will."""

    def __init__(self, broker: BrokerProcess, node: str, interval: float = 0.3) -> None:
        self.broker, self.node, self.interval = broker, node, interval
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> ProcNode:
        """Start the process and wait until it has said hello."""
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(Path(__file__).with_name("node_proc.py")),
                str(self.broker.port),
                self.node,
                str(self.interval),
            ],
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.strip() == "ready", line
        return self

    def kill(self) -> None:
        """SIGKILL: the session dies uncleanly; the broker publishes the will."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


@dataclass
class EventLog:
    """Collects the fleet events published on the bus."""

    events: list[Event] = field(default_factory=list)

    def attach(self, bus: Bus) -> None:
        """Subscribe to every fleet event."""
        bus.subscribe(f"{topics.ROOT}/events/fleet/+", Event, self._on)

    async def _on(self, event: Event, _ctx: object) -> None:
        self.events.append(event)

    def kinds(self, node: str) -> list[str]:
        """The kinds of event about ``node``, in order."""
        return [e.kind.value for e in self.events if e.node == node]


async def until(predicate: Any, timeout: float = 30.0, what: str = "") -> Any:
    """Poll the async ``predicate()`` until it returns something truthy; return it."""
    last: Any = None
    try:
        async with asyncio.timeout(timeout):
            while True:
                last = await predicate()
                if last:
                    return last
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"not within {timeout}s: {what} (last: {last!r})") from None
