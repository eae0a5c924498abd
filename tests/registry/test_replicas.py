"""Two registry replicas ingest one fleet into one database, each node once; one dies, the
other takes every node, and no live node is ever judged stale or offline.

The embedded broker (``fogmesh.broker``, with its shared subscriptions) hands each node's
topics to one replica of the ``$share/registry/...`` group.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from fogmesh.bus import Bus, BusConfig
from fogmesh.protocol import (
    EventKind,
    Heartbeat,
    NodeHello,
    NodeLiveness,
    NodeStateMessage,
    topics,
)
from fogmesh.registry import Registry, RegistrySettings
from fogmesh.registry.db import make_engine
from fogmesh.registry.db.writes import EVENTS, NODES
from tests.broker.conftest import PASSWORDS, MeshProcess, broker_spec, port_of, write_mesh
from tests.registry.support import USAGE, facts, until
from tests.support.buses import unique

NODES_N = 12
INTERVAL = 0.5
_SETTINGS: dict[str, Any] = {"share": "registry", "missed": 3, "default_interval": INTERVAL}


def _config(port: int, client_id: str) -> BusConfig:
    return BusConfig(
        port=port,
        client_id=client_id,
        username="svc",
        password=PASSWORDS["svc"],
        reconnect_base=0.1,
        reconnect_cap=1.0,
        keepalive=5,
    )


@contextlib.asynccontextmanager
async def _fleet(port: int, names: list[str]) -> AsyncIterator[None]:
    """``names`` say hello and online, then heartbeat every ``INTERVAL`` (one connection)."""
    async with Bus(_config(port, unique("fleet"))) as bus:
        await bus.wait_connected(timeout=15)
        for n in names:
            await bus.publish(
                topics.node(n, "hello"), NodeHello(node=n, facts=facts()), retain=True
            )
            state = NodeStateMessage(node=n, state=NodeLiveness.ONLINE)
            await bus.publish(topics.node(n, "state"), state, retain=True)

        async def beat() -> None:
            seq = 0
            while True:
                for n in names:
                    hb = Heartbeat(node=n, seq=seq, interval_s=INTERVAL, usage=USAGE)
                    await bus.publish(topics.node(n, "heartbeat"), hb, qos=0)
                seq += 1
                await asyncio.sleep(INTERVAL)

        task = asyncio.create_task(beat())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _seqs(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(select(NODES.c.node, NODES.c.last_seq, NODES.c.state)).all()
    return {node: seq for node, seq, state in rows if seq is not None and state == "online"}


def _events(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        query = select(EVENTS.c.kind, func.count()).group_by(EVENTS.c.kind)
        return {kind: int(n) for kind, n in conn.execute(query).all()}


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[int]:
    """An embedded mesh broker (the one with shared subscriptions); yields its port."""
    mesh = write_mesh(tmp_path / "mesh.yaml", {"hub": broker_spec(tmp_path, "hub")}, [])
    proc = MeshProcess(mesh, "hub").start()
    yield port_of(mesh, "hub")
    proc.kill()


async def test_two_replicas_split_the_fleet_and_one_takes_all_when_the_other_dies(
    hub: int, db_url: str
) -> None:
    port = hub
    names = [unique("n") for _ in range(NODES_N)]
    engine = make_engine(db_url)
    try:
        async with (
            _replica(port, db_url, "registry-a") as a,
            _replica(port, db_url, "registry-b") as b,
            _fleet(port, names),
        ):
            await until(
                lambda: _async(len(_seqs(engine)) == NODES_N and a.heard() | b.heard()),
                what="every node stored",
            )
            # each node is heard by one replica, and both replicas hear some
            assert not a.heard() & b.heard()
            assert a.heard() | b.heard() == set(names)
            assert a.heard()
            assert b.heard()
            assert _events(engine).get(EventKind.NODE_JOINED.value) == NODES_N

            # replica a dies (its connection closes); b takes every node
            a_nodes, before = a.heard(), _seqs(engine)
            await a.stop()
            await until(lambda: _async(b.heard() == set(names)), what="b hears every node")
            await until(
                lambda: _async(all(_seqs(engine).get(n, -1) > before[n] + 3 for n in names)),
                what="heartbeats of a's nodes stored by b",
            )
            assert a_nodes <= b.heard()
        events = _events(engine)
        assert events.get(EventKind.NODE_JOINED.value) == NODES_N  # once each, not twice
        assert EventKind.NODE_STALE.value not in events, events
        assert EventKind.NODE_LOST.value not in events, events
    finally:
        engine.dispose()


@contextlib.asynccontextmanager
async def _replica(port: int, db_url: str, client_id: str) -> AsyncIterator[Replica]:
    """A replica running in this event loop; ended at the block's end or by ``stop()``."""
    registry = Registry(RegistrySettings(bus=_config(port, client_id), db_url=db_url, **_SETTINGS))
    replica = Replica(registry, asyncio.create_task(registry.run()))
    try:
        async with asyncio.timeout(30):
            while not registry.ready.is_set():
                if replica.task.done():
                    replica.task.result()
                await asyncio.sleep(0.02)
        yield replica
    finally:
        await replica.stop()
        registry.engine.dispose()


@dataclass
class Replica:
    registry: Registry
    task: asyncio.Task[None]

    def heard(self) -> set[str]:
        """The nodes this replica has heard itself."""
        return {n for n, live in self.registry.tracker.nodes.items() if live.heard}

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


async def _async(value: object) -> object:
    return value
