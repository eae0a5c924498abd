"""A ``--share-by registry`` replica that loses a node's join claim (``EventOp.claim``) to the
row another replica stored. The losing replica took the node for new: its tracker did not know
it and its snapshot of the others' nodes (``ReplicaView``) was older than the node's row. Its
batch does not create the row, so its ``node-joined`` is neither recorded nor published; what
it records and tells instead is what the stored state calls for:

* stored offline (a node another replica took offline, now back): ``node-back`` from offline,
  recorded and published with the node's ``online`` (that replica wrote the node online and
  published nothing at all: offline -> online without an event);
* stored online: nothing (the other replica told its join), and the stored state stands;
* a late heartbeat, the will again and a new boot's hello: one ``node-back``, no second loss.

And a node b never heard, stored online by a (b's snapshot holding its row, or older than it):
its will, heard at b before any sign of life, is its ``node-lost``.

Two replicas of one group in this loop on a real amqtt broker, SQLite or PostgreSQL. Replica b's
snapshot of the others' nodes is its start's (its ``ReplicaView`` reads once): the snapshot
older than a node's row, which lasts up to a replica period in a live group, made lasting.
The node is replica a's (rendezvous hashing) until a stops; then b owns every node.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import Engine, select

from fogmesh.bus import Bus
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
from fogmesh.registry.partition import owner_of
from tests.registry.support import USAGE, EventLog, facts, until
from tests.support.brokers import BrokerProcess
from tests.support.buses import bus_config, unique

INTERVAL = 10.0
"""The default interval: no node is judged stale within a test; a replica period of 2.5 s."""


@contextlib.asynccontextmanager
async def _replica(
    broker: BrokerProcess, db_url: str, me: str, group: str, *, frozen_view: bool = False
) -> AsyncIterator[tuple[Registry, asyncio.Task[None]]]:
    """A replica of ``group`` running in this loop, joined; ``frozen_view``: its snapshot of
    the others' nodes is read at its start only."""
    settings = RegistrySettings(
        bus=bus_config(broker, me),
        db_url=db_url,
        default_interval=INTERVAL,
        share=group,
        share_by="registry",
    )
    registry = Registry(settings)
    if frozen_view:
        assert registry.replicas is not None
        registry.replicas.period = 3600.0
    task = asyncio.create_task(registry.run())
    try:
        async with asyncio.timeout(30):
            while registry.partition is None or not registry.partition.joined.is_set():
                if task.done():
                    task.result()
                await asyncio.sleep(0.02)
            await registry.ready.wait()
        yield registry, task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        registry.engine.dispose()


async def _say(bus: Bus, node: str, state: NodeLiveness, boot: str, *, hello: bool) -> None:
    """``node`` says ``state`` (after a hello when ``hello``), live, as its agent does."""
    if hello:
        msg = NodeHello(node=node, facts=facts(), boot_id=boot)
        await bus.publish(topics.node(node, "hello"), msg, retain=True)
    said = NodeStateMessage(node=node, state=state, boot_id=boot)
    await bus.publish(topics.node(node, "state"), said, retain=True)


def _stored(engine: Engine, node: str) -> tuple[str | None, list[str]]:
    """``node``'s stored state and its stored events' kinds, in order."""
    with engine.connect() as conn:
        state = conn.execute(select(NODES.c.state).where(NODES.c.node == node)).scalar()
        query = select(EVENTS.c.kind).where(EVENTS.c.node == node).order_by(EVENTS.c.seq)
        return state, list(conn.execute(query).scalars())


async def _async(value: Any) -> Any:
    return value


async def _published_after(bus: Bus, log: EventLog, node: str) -> None:
    """Once the replica has recorded what it heard of ``node`` (its writer drained): a marker
    node joins, and its ``node-joined`` is published after whatever it told of ``node``."""
    marker = f"marker-{node}"
    await _say(bus, marker, NodeLiveness.ONLINE, "boot-m", hello=True)
    await until(lambda: _async(log.kinds(marker) == ["node-joined"]), what="the marker joins")


@contextlib.asynccontextmanager
async def _handed_over(
    broker: BrokerProcess, db_url: str, *, lost_first: bool, frozen_view: bool = True
) -> AsyncIterator[tuple[Registry, Bus, EventLog, Engine, str]]:
    """Replica a hears a node join (and, if ``lost_first``, go offline by its will), then
    stops; replica b owns the node from then on. b's snapshot predates the node's row, or,
    without ``frozen_view``, holds it."""
    group, a_id, b_id = unique("reg"), unique("registry-a"), unique("registry-b")
    members = sorted([a_id, b_id])
    node = next(n for i in range(64) if owner_of((n := f"n{i}-{group}").encode(), members) == a_id)
    engine = make_engine(db_url)
    try:
        async with Bus(bus_config(broker)) as bus, _replica(broker, db_url, a_id, group) as a:
            log = EventLog()
            log.attach(bus)
            await bus.wait_connected(timeout=15)
            async with _replica(broker, db_url, b_id, group, frozen_view=frozen_view) as (b, _):
                assert a[0].partition is not None
                assert b.partition is not None
                both = a[0].partition, b.partition
                await until(
                    lambda: _async(all(p.members == members for p in both)), what="both joined"
                )
                await _say(bus, node, NodeLiveness.ONLINE, "boot-1", hello=True)
                await until(
                    lambda: _async(log.kinds(node) == ["node-joined"]), what="a tells the join"
                )
                if lost_first:
                    await _say(bus, node, NodeLiveness.OFFLINE, "boot-1", hello=False)
                    await until(
                        lambda: _async(_stored(engine, node)[0] == "offline"),
                        what="a stores the node offline",
                    )
                    await until(
                        lambda: _async(log.kinds(node) == ["node-joined", "node-lost"]),
                        what="a tells the loss",
                    )
                a[1].cancel()  # a stops: it leaves the group at once
                with contextlib.suppress(asyncio.CancelledError):
                    await a[1]
                await until(lambda: _async(b.partition.members == [b_id]), what="b alone")
                assert node not in b.tracker.nodes  # b never heard it: a owned it
                view = b.replicas
                assert view is not None
                if frozen_view:
                    assert view.lookup(node) is None
                else:
                    await until(lambda: _async(view.lookup(node)), what="b's view has the node")
                yield b, bus, log, engine, node
    finally:
        engine.dispose()


async def test_a_node_stored_offline_comes_back_through_a_lost_join_claim(
    amqtt_broker: BrokerProcess, db_url: str
) -> None:
    """The node back online at b (a new boot says hello): stored online with a ``node-back``
    from offline, recorded and published, and b's tracker holds it online."""
    async with _handed_over(amqtt_broker, db_url, lost_first=True) as (b, bus, log, engine, node):
        await _say(bus, node, NodeLiveness.ONLINE, "boot-2", hello=True)
        await until(lambda: _async(node in b.tracker.nodes), what="b hears the node")
        await b.writer.drained(timeout=15)
        await until(
            lambda: _async(_stored(engine, node)[0] == "online"), what="the node stored online"
        )
        try:
            await until(
                lambda: _async("node-back" in log.kinds(node)),
                timeout=10,
                what="node-back published",
            )
        finally:
            state, stored = _stored(engine, node)
            assert (state, stored) == ("online", ["node-joined", "node-lost", "node-back"])
        assert log.kinds(node) == ["node-joined", "node-lost", "node-back"]
        back = next(e for e in log.events if e.node == node and e.kind is EventKind.NODE_BACK)
        assert back.data == {"from": "offline", "via": "hello", "rebooted": True}
        assert b.tracker.state(node) == "online"


async def test_a_node_stored_online_tells_nothing_through_a_lost_join_claim(
    amqtt_broker: BrokerProcess, db_url: str
) -> None:
    """The node heard at b while stored online by a: no event (a told its join), the node
    stays online, once in the database's events, and b's tracker holds it online."""
    async with _handed_over(amqtt_broker, db_url, lost_first=False) as (b, bus, log, engine, node):
        await _say(bus, node, NodeLiveness.ONLINE, "boot-1", hello=True)
        await until(lambda: _async(node in b.tracker.nodes), what="b hears the node")
        await b.writer.drained(timeout=15)
        await _published_after(bus, log, node)
        assert _stored(engine, node) == ("online", ["node-joined"])
        assert log.kinds(node) == ["node-joined"]
        assert b.tracker.state(node) == "online"


@pytest.mark.parametrize("frozen_view", [False, True], ids=["snapshot", "older-snapshot"])
async def test_a_will_heard_first_at_the_next_replica_loses_the_node_once(
    amqtt_broker: BrokerProcess, db_url: str, frozen_view: bool
) -> None:
    """b owns the node (a stopped) and never heard it (stored online by a; b's snapshot holds
    the row, or is older than it); the node's will reaches b before any sign of life:
    ``node-lost`` from online, recorded and published once, and b's tracker holds it offline."""
    async with _handed_over(amqtt_broker, db_url, lost_first=False, frozen_view=frozen_view) as (
        b, bus, log, engine, node
    ):  # fmt: skip
        await _say(bus, node, NodeLiveness.OFFLINE, "boot-1", hello=False)
        await until(lambda: _async(node in b.tracker.nodes), what="b hears the will")
        await b.writer.drained(timeout=15)
        await _published_after(bus, log, node)
        assert _stored(engine, node) == ("offline", ["node-joined", "node-lost"])
        assert log.kinds(node) == ["node-joined", "node-lost"]
        lost = next(e for e in log.events if e.node == node and e.kind is EventKind.NODE_LOST)
        assert lost.data == {"from": "online", "reason": "last-will"}
        assert b.tracker.state(node) == "offline"


async def test_a_late_heartbeat_its_will_and_a_new_boot_at_the_losing_replica(
    amqtt_broker: BrokerProcess, db_url: str
) -> None:
    """Stored offline by its will (a told it), the node is heard at b (its snapshot older than
    the row): a late heartbeat of boot 1 (b takes it for new and claims the join), boot 1's
    will again, then boot 2's hello, back to back. One ``node-back`` from offline, no second
    ``node-lost``; stored online and online in b's tracker, judged."""
    async with _handed_over(amqtt_broker, db_url, lost_first=True) as (b, bus, log, engine, node):
        beat = Heartbeat(node=node, seq=1, ts=time.time(), interval_s=INTERVAL, usage=USAGE)
        await bus.publish(topics.node(node, "heartbeat"), beat)
        await _say(bus, node, NodeLiveness.OFFLINE, "boot-1", hello=False)
        await _say(bus, node, NodeLiveness.ONLINE, "boot-2", hello=True)
        await until(lambda: _async("node-back" in log.kinds(node)), what="node-back published")
        await b.writer.drained(timeout=15)
        await _published_after(bus, log, node)
        kinds = ["node-joined", "node-lost", "node-back"]
        assert _stored(engine, node) == ("online", kinds)
        assert log.kinds(node) == kinds
        assert b.tracker.state(node) == "online"
        assert b.tracker.nodes[node].due is not None
