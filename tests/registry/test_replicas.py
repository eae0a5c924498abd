"""Two registry replicas ingest one fleet into one database, each node once; one dies, the
other takes every node, and no live node is ever judged stale or offline.

* The embedded broker (``fogmesh.broker``, with its shared subscriptions) hands each node's
  topics to one replica of the ``$share/registry/...`` group.
* Mosquitto 2 shares round-robin; a replica SIGKILLed there must leave no share behind (the
  replicas' sessions are clean).
* NATS 2.9 has no shared subscriptions (``$share/...`` matches nothing: reproduced below), so
  on the NATS cluster the replicas split the fleet themselves (``--share-by registry``).

The replica that dies is a ``fogmesh-registry`` process, SIGKILLed; the other runs in the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from fogmesh.bus import Bus, MessageContext
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
from tests.registry.support import USAGE, facts, svc_config, until
from tests.support.brokers import REPO, BrokerProcess
from tests.support.buses import unique
from tests.support.mesh import MeshProcess
from tests.support.mesh_file import PASSWORDS, broker_spec, port_of, write_mesh
from tests.support.nats_cluster import Cluster, nats_cluster, wait_ready

NODES_N = 12
INTERVAL = 1.0
_SETTINGS: dict[str, Any] = {"share": "registry", "missed": 3, "default_interval": INTERVAL}


async def _hello(bus: Bus, names: list[str]) -> None:
    """``names`` say hello and online (retained: replayed to each replica as it subscribes)."""
    for n in names:
        await bus.publish(topics.node(n, "hello"), NodeHello(node=n, facts=facts()), retain=True)
        state = NodeStateMessage(node=n, state=NodeLiveness.ONLINE)
        await bus.publish(topics.node(n, "state"), state, retain=True)


@contextlib.asynccontextmanager
async def _beating(
    bus: Bus, names: list[str], interval: float, announced: float | None = None
) -> AsyncIterator[None]:
    """``names`` heartbeat every ``interval`` (announcing ``announced``, or ``interval``)."""

    async def beat() -> None:
        seq = 0
        while True:
            for n in names:
                hb = Heartbeat(node=n, seq=seq, interval_s=announced or interval, usage=USAGE)
                await bus.publish(topics.node(n, "heartbeat"), hb, qos=0)
            seq += 1
            await asyncio.sleep(interval)

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@contextlib.asynccontextmanager
async def _fleet(port: int, names: list[str], interval: float = INTERVAL) -> AsyncIterator[None]:
    """``names`` say hello and online, then heartbeat every ``interval`` (one connection)."""
    async with Bus(svc_config(port, unique("fleet"))) as bus:
        await bus.wait_connected(timeout=15)
        await _hello(bus, names)
        async with _beating(bus, names, interval):
            yield


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
async def _replica(
    port: int, db_url: str, client_id: str, **settings: Any
) -> AsyncIterator[Replica]:
    """A replica running in this event loop; ended at the block's end or by ``stop()``."""
    chosen = {**_SETTINGS, **settings}
    registry = Registry(RegistrySettings(bus=svc_config(port, client_id), db_url=db_url, **chosen))
    beats: Counter[str] = Counter()
    ingest = registry.ingest.on_heartbeat

    async def counted(msg: Heartbeat, ctx: MessageContext) -> None:
        beats[msg.node] += 1
        await ingest(msg, ctx)

    registry.ingest.on_heartbeat = counted  # type: ignore[method-assign]
    replica = Replica(registry, asyncio.create_task(registry.run()), beats)
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
    beats: Counter[str]
    """Heartbeats handed to this replica's ingest, per node."""

    def heard(self) -> set[str]:
        """The nodes this replica has heard itself."""
        return {n for n, live in self.registry.tracker.nodes.items() if live.heard}

    def seqs(self) -> dict[str, int]:
        """The newest heartbeat sequence this replica has had of each node."""
        return {n: live.newest_seq for n, live in self.registry.tracker.nodes.items()}

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


async def _async(value: object) -> object:
    return value


@contextlib.contextmanager
def _cli_replica(
    port: int, db_url: str, client_id: str, group: str, *, share_by: str, interval: float
) -> Iterator[subprocess.Popen[bytes]]:
    """``fogmesh-registry --share GROUP --share-by ...`` as a user runs it; SIGKILLed at the
    block's end if still running."""
    args = [
        *(sys.executable, "-m", "fogmesh.registry", "--host", "127.0.0.1", "--port", str(port)),
        *("--username", "svc", "--password", PASSWORDS["svc"], "--client-id", client_id),
        *("--db", db_url, "--share", group, "--share-by", share_by),
        *("--default-interval", str(interval), "--missed", "3", "--log-level", "warning"),
    ]
    proc = subprocess.Popen(args, cwd=REPO)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """Three nats-server members rendered by ``fogmesh-broker render-nats``."""
    with nats_cluster(tmp_path) as running:
        yield running


async def _one_dies(
    port: int, db_url: str, share_by: str, *, split: bool, interval: float = INTERVAL
) -> tuple[Replica, set[str], dict[str, int]]:
    """Replica a (a process) and b (here) ingest the fleet; a is SIGKILLed; b must take every
    node. ``split``: each node is heard by one replica (b hears some, not all, before)."""
    names = [unique("n") for _ in range(NODES_N)]
    group = unique("reg")
    engine = make_engine(db_url)
    try:
        with _cli_replica(
            port, db_url, "registry-a", group, share_by=share_by, interval=interval
        ) as a:
            settings = {"share": group, "share_by": share_by, "default_interval": interval}
            async with (
                _replica(port, db_url, "registry-b", **settings) as b,
                _fleet(port, names, interval),
            ):
                await until(
                    lambda: _async(len(_seqs(engine)) == NODES_N and b.heard()),
                    what="every node stored",
                )
                if split:
                    # once a has joined, b hears only some nodes, and every node is stored
                    partition = b.registry.partition
                    assert partition is not None
                    await until(
                        lambda: _async(len(partition.members) == 2), what="a joins the group"
                    )
                    await asyncio.sleep(2 * interval)  # both now agree on the members
                    at_b, stored = b.seqs(), _seqs(engine)
                    await asyncio.sleep(5 * interval)
                    moved = b.seqs()
                    by_b = {n for n in names if moved.get(n, -1) > at_b.get(n, -1)}
                    assert by_b, "b took no node"
                    assert by_b < set(names), "b took every node: a took none"
                    now = _seqs(engine)
                    behind = {n: (stored.get(n), now.get(n)) for n in names}
                    behind = {n: v for n, v in behind.items() if (v[1] or -1) <= (v[0] or -1)}
                    assert not behind, f"not stored by a: {behind}"
                before = _seqs(engine)
                assert a.poll() is None, "replica a exited"
                a.kill()  # SIGKILL: no DISCONNECT, no goodbye row
                a.wait()
                await until(
                    lambda: _async(all(_seqs(engine).get(n, -1) > before[n] + 3 for n in names)),
                    timeout=30,
                    what="heartbeats of every node stored after the kill",
                )
                # from now on b gets every heartbeat: none goes to a share a left behind
                counted = b.beats.copy()
                await asyncio.sleep(6 * interval)
                got = {n: b.beats[n] - counted[n] for n in names}
                assert all(k >= 5 for k in got.values()), f"heartbeats b got in 6 intervals: {got}"
                heard_by_b = b.heard()
        return b, heard_by_b, _events(engine)
    finally:
        engine.dispose()


def _no_double_work(events: dict[str, int]) -> None:
    assert events.get(EventKind.NODE_JOINED.value) == NODES_N, events  # once each, not twice
    assert EventKind.NODE_STALE.value not in events, events
    assert EventKind.NODE_LOST.value not in events, events


async def test_a_replica_killed_on_mosquitto_leaves_no_share_behind(
    mosquitto_broker: BrokerProcess, db_url: str
) -> None:
    """Mosquitto 2.0 kept handing a SIGKILLed replica's persistent session its share of every
    node's heartbeats (a third of a 2,000-node fleet not stored again within 120 s); with
    clean sessions the survivor gets every message at once."""
    # round-robin: each replica hears a node every other beat and relies on the other's stored
    # ones, so the stale margin is half an interval of database round trips: 2 s, not 1
    port = mosquitto_broker.port
    _b, heard, events = await _one_dies(port, db_url, "broker", split=False, interval=2.0)
    assert len(heard) == NODES_N
    _no_double_work(events)


@pytest.mark.nats
async def test_share_subscriptions_hear_nothing_on_nats(cluster: Cluster, sqlite_url: str) -> None:
    """Why ``--share-by registry`` exists: NATS 2.9's MQTT gateway is MQTT 3.1.1, where
    ``$share/{group}/...`` is a plain filter (subject ``$share.{group}...``) that no node's
    topic matches; such a replica hears no node at all."""
    await wait_ready(cluster)
    port = cluster.ports[0]
    names = [unique("n") for _ in range(4)]
    async with (
        _replica(port, sqlite_url, "registry-share", share=unique("reg")) as r,
        _fleet(port, names),
    ):
        await asyncio.sleep(5 * INTERVAL)
        assert r.heard() == set()


@pytest.mark.nats
async def test_replicas_split_the_fleet_through_the_nats_cluster(
    cluster: Cluster, db_url: str
) -> None:
    """``--share-by registry`` on the three-member cluster: a (a process) and b each ingest a
    part of the fleet, every node joins once; a is SIGKILLed and b takes every node, none
    judged stale or lost."""
    await wait_ready(cluster)
    b, heard, events = await _one_dies(cluster.ports[0], db_url, "registry", split=True)
    assert heard == b.heard()
    assert b.registry.partition is not None
    assert b.registry.partition.dropped > 0  # a's messages reached b too, and were left
    _no_double_work(events)


async def test_split_replicas_leave_a_quiet_node_to_its_owner(hub: int, db_url: str) -> None:
    """``--share-by registry`` with nodes that heartbeat more seldom than the default interval
    allows (an agent sends one only on news; each heartbeat announces its ``interval_s``): a
    replica that knows a node only from its retained hello never hears its heartbeats once the
    partition gives the node to the other, so it neither knows that interval nor may judge the
    node, which its owner keeps online. (It judged such nodes lost by the default interval, a
    few seconds in, and every replica then took the stored offline.)"""
    names = [unique("n") for _ in range(NODES_N)]
    default, quiet, every = 2.0, 12.0, 30.0  # sent every 12 s, announced as 30 s
    engine = make_engine(db_url)
    group = unique("reg")
    async with Bus(svc_config(hub, unique("fleet"))) as bus:
        await bus.wait_connected(timeout=15)
        await _hello(bus, names)
        settings = {"share": group, "share_by": "registry", "default_interval": default}
        try:
            async with (
                _replica(hub, db_url, "registry-a", **settings) as a,
                _replica(hub, db_url, "registry-b", **settings),
            ):
                partition = a.registry.partition
                assert partition is not None
                await until(lambda: _async(len(partition.members) == 2), what="both joined")
                async with _beating(bus, names, quiet, announced=every):
                    await until(lambda: _async(len(_seqs(engine)) == NODES_N), what="all stored")
                    await asyncio.sleep(1.5 * quiet)  # a silence of 12 s, past 4 default intervals
                    assert len(_seqs(engine)) == NODES_N  # every node still online
            events = _events(engine)
            assert EventKind.NODE_LOST.value not in events, events
            assert EventKind.NODE_STALE.value not in events, events
        finally:
            engine.dispose()
