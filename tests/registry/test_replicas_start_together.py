"""``--share-by registry`` replicas started at the same moment into an empty group: each finds
no live member, so each takes every node until they see each other (up to a replica period).
Whatever the start order, every node joins once: one ``node-joined`` stored and published per
node (both replicas took every retained hello and the first live ones; 14 to 24 joins for 12
nodes were seen on NATS)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import functools
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.exc import SQLAlchemyError

from fogmesh.bus import Bus, BusConfig
from fogmesh.protocol import EventKind, NodeHello, NodeLiveness, NodeStateMessage, topics
from fogmesh.registry import Registry, RegistrySettings
from fogmesh.registry.db import make_engine, migrate
from fogmesh.registry.db.writes import EVENTS, NODES
from fogmesh.registry.ops import Batch, EventOp, LivenessOp
from fogmesh.registry.partition import Partition
from tests.registry.support import EventLog, facts, svc_config, until, write_at_once
from tests.support.brokers import BrokerProcess
from tests.support.buses import bus_config, unique
from tests.support.nats_cluster import Cluster, nats_cluster, wait_ready

NODES_N = 12
ROUNDS = 3
INTERVAL = 4.0
"""The default interval: a replica period of 1 s, the window in which both take every node."""


async def _say_hello(bus: Bus, names: list[str]) -> None:
    """``names`` say hello and online, retained (as agents do)."""
    for n in names:
        hello = NodeHello(node=n, facts=facts(), boot_id=f"boot-{n}")
        await bus.publish(topics.node(n, "hello"), hello, retain=True)
        state = NodeStateMessage(node=n, state=NodeLiveness.ONLINE, boot_id=f"boot-{n}")
        await bus.publish(topics.node(n, "state"), state, retain=True)


@contextlib.asynccontextmanager
async def _together(
    configs: list[BusConfig], db_url: str, group: str
) -> AsyncIterator[list[Registry]]:
    """Replicas of ``group``, one per config, started in the same loop turn."""
    settings: dict[str, Any] = {"share": group, "share_by": "registry"}
    registries = [
        Registry(RegistrySettings(bus=c, db_url=db_url, default_interval=INTERVAL, **settings))
        for c in configs
    ]
    tasks = [asyncio.create_task(r.run()) for r in registries]
    try:
        yield registries
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for r in registries:
            r.engine.dispose()


async def _ready(registries: list[Registry]) -> None:
    async def ready() -> bool:
        return all(r.ready.is_set() for r in registries)

    await until(ready, timeout=60, what="every replica connected")


def _stored_joins(engine: Engine, names: list[str]) -> Counter[str]:
    """``node-joined`` events stored per node of ``names`` (nothing before the tables exist)."""
    query = select(EVENTS.c.node).where(EVENTS.c.kind == EventKind.NODE_JOINED.value)
    try:
        with engine.connect() as conn:
            return Counter(n for (n,) in conn.execute(query) if n in names)
    except SQLAlchemyError:
        return Counter()


def _stored(engine: Engine, names: list[str]) -> set[str]:
    """The nodes of ``names`` stored (none before the tables exist)."""
    try:
        with engine.connect() as conn:
            return {n for (n,) in conn.execute(select(NODES.c.node)) if n in names}
    except SQLAlchemyError:
        return set()


async def _rounds(replicas: list[BusConfig], client: BusConfig, db_url: str) -> None:
    """``ROUNDS`` times, two replicas of a new group started together, and three fleets that
    say hello (retained, as agents do): one before (replayed to both as they subscribe), one
    as they start (replayed or delivered), one once both are connected (delivered live while
    they do not see each other yet). Every node must join exactly once."""
    engine = make_engine(db_url)
    try:
        async with Bus(client) as bus:
            log = EventLog()
            log.attach(bus)
            await bus.wait_connected(timeout=15)
            for _ in range(ROUNDS):
                fleets = [[unique(f"f{k}-") for _ in range(NODES_N)] for k in range(3)]
                names = [n for fleet in fleets for n in fleet]
                await _say_hello(bus, fleets[0])
                configs = [dataclasses.replace(c, client_id=unique("registry")) for c in replicas]
                async with _together(configs, db_url, unique("reg")) as registries:
                    await _say_hello(bus, fleets[1])
                    await _ready(registries)
                    await _say_hello(bus, fleets[2])

                    async def settled(names: list[str] = names) -> bool:
                        joins = _stored_joins(engine, names)
                        return _stored(engine, names) == set(joins) == set(names)

                    await until(settled, timeout=60, what="every node stored and joined")
                    await asyncio.sleep(INTERVAL / 2)  # two replica periods: the overlap is over
                published = Counter(
                    e.node for e in log.events if e.kind is EventKind.NODE_JOINED and e.node
                )
                stored = _stored_joins(engine, names)
                assert {n: stored[n] for n in names if stored[n] != 1} == {}, "stored"
                assert {n: published[n] for n in names if published[n] != 1} == {}, "published"
                for n in names:  # no retained hello left for the next round
                    await bus.publish_raw(topics.node(n, "hello"), b"", retain=True)
                    await bus.publish_raw(topics.node(n, "state"), b"", retain=True)
    finally:
        engine.dispose()


def test_registries_migrating_a_fresh_database_at_once_create_it_once(tmp_path: Path) -> None:
    """Two registries starting together on a fresh SQLite file: each checked for the tables,
    found none, and one failed with "table already exists" (19 of 20 tries here); once that
    was serialised, one's switch to WAL failed with "database is locked" while the other
    created the tables. PostgreSQL serialises them by an advisory lock. Here both must
    start (the schema, then the replicas' table), ten times over."""
    for i in range(10):
        engines = [make_engine(f"sqlite:///{tmp_path}/fresh-{i}.db") for _ in range(2)]
        partitions = [
            Partition(e, group="g", me=f"r{k}", period=1.0) for k, e in enumerate(engines)
        ]
        try:
            with concurrent.futures.ThreadPoolExecutor(2) as pool:
                for made in [pool.submit(migrate, e) for e in engines]:
                    made.result(timeout=60)
                for joined in [pool.submit(asyncio.run, p.prepare()) for p in partitions]:
                    joined.result(timeout=60)
        finally:
            for e in engines:
                e.dispose()


def test_batches_creating_the_same_nodes_at_once_record_each_join_once(db_url: str) -> None:
    """The claim each join checks (``EventOp.claim``): two replicas' batches take the same 300
    new nodes, in other orders, in two threads at once; each node's row is created by one of
    them, which alone records its ``node-joined`` and publishes it (its callback runs)."""
    nodes = [f"n{i:03d}" for i in range(300)]
    engines = [make_engine(db_url) for _ in range(2)]
    migrate(engines[0])
    published: list[str] = []
    batches = []
    for k, order in enumerate([nodes, nodes[::-1]]):
        batch = Batch()
        for n in order:
            batch.add(LivenessOp(n, "online", 1.0, "hello"))
            row: dict[str, Any] = {"id": f"{k}-{n}", "kind": "node-joined", "tenant": None}
            row.update(node=n, app=None, workload=None, ts=1.0, source=f"r{k}", message="")
            batch.add(EventOp({**row, "data": {}, "received_at": 1.0}, claim=n))
            batch.after_commit.append((functools.partial(published.append, n), n))
        batches.append(batch)
    try:
        write_at_once(engines, batches)
        for batch in batches:  # as the writer does once the batch is committed
            for callback, claim in batch.after_commit:
                if batch.won(claim):
                    callback()
        assert batches[0].created.isdisjoint(batches[1].created)
        assert batches[0].created | batches[1].created == set(nodes)
        assert _stored_joins(engines[0], nodes) == Counter(nodes)
        assert Counter(published) == Counter(nodes)
    finally:
        for e in engines:
            e.dispose()


async def test_replicas_started_together_join_each_node_once(
    mosquitto_broker: BrokerProcess, db_url: str
) -> None:
    config = bus_config(mosquitto_broker, "registry")
    await _rounds([config, config], bus_config(mosquitto_broker), db_url)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """Three nats-server members rendered by ``fogmesh-broker render-nats``."""
    with nats_cluster(tmp_path) as running:
        yield running


@pytest.mark.nats
async def test_replicas_started_together_on_nats_join_each_node_once(
    cluster: Cluster, db_url: str
) -> None:
    await wait_ready(cluster)
    configs = [svc_config(cluster.ports[0], "registry"), svc_config(cluster.ports[1], "registry")]
    await _rounds(configs, svc_config(cluster.ports[2], unique("watch")), db_url)
