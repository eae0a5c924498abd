"""What a node says while its join claim is not yet settled, at the replica that loses the claim
(another replica stored the node first, offline by its last will): its ingest, writer and
tracker on SQLite and PostgreSQL. The losing replica's tracker takes the node for new; what it
hears of the node until the join's batch is committed (in that batch, or while it is written)
must be judged from the stored state, not from the join's ``online``: no second ``node-lost``
of a node stored offline, and the stored state and the tracker's agree."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
from sqlalchemy import Engine, select

from fogmesh.protocol import Event
from fogmesh.registry.batcher import WriteQueue
from fogmesh.registry.db import BatchWriter, make_engine, migrate
from fogmesh.registry.db.writes import EVENTS, NODES
from fogmesh.registry.ingest import Ingest
from fogmesh.registry.liveness import LivenessTracker
from fogmesh.registry.ops import Batch, LivenessOp

NODE = "n1"


@pytest.fixture
def db(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url)
    migrate(engine)
    writer = BatchWriter(engine)  # another replica: the node joined (boot-1), then its will
    writer(Batch.of(LivenessOp(NODE, "online", 100.0, "hello", "boot-1")))
    writer(Batch.of(LivenessOp(NODE, "offline", 110.0, "last-will")))
    yield engine
    engine.dispose()


def _stored(engine: Engine) -> tuple[str, str, list[str]]:
    """The node's stored state and reason, and its stored events' kinds in order."""
    with engine.connect() as conn:
        state, reason = conn.execute(select(NODES.c.state, NODES.c.offline_reason)).one()
        kinds = list(conn.execute(select(EVENTS.c.kind).order_by(EVENTS.c.seq)).scalars())
        return state, reason, kinds


@contextlib.asynccontextmanager
async def _replica(
    apply: Callable[[Batch], None],
) -> AsyncIterator[tuple[Ingest, LivenessTracker, list[Event], WriteQueue]]:
    """Replica b's ingest (its tracker does not know the node) over ``apply``; what it
    publishes; the writer runs within the block and is drained at its end."""
    published: list[Event] = []
    writer = WriteQueue(apply, interval=0.05)
    tracker = LivenessTracker(missed=3, default_interval=10.0)
    ingest = Ingest(tracker, writer, published.append, source="r-b")
    task = asyncio.create_task(writer.run())
    try:
        yield ingest, tracker, published, writer
        await writer.drained(timeout=15)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _heartbeat(ingest: Ingest, tracker: LivenessTracker) -> None:
    """A (late) heartbeat of the node: b takes it for new, a join it claims."""
    (joined,) = tracker.alive(NODE, time.monotonic(), retained=False, via="heartbeat")
    assert joined.kind is not None
    assert joined.kind.value == "node-joined"
    await ingest.apply([joined])


async def _will(ingest: Ingest, tracker: LivenessTracker) -> None:
    await ingest.apply(tracker.last_will(NODE, time.monotonic(), boot_id="boot-1"))


async def _hello(ingest: Ingest, tracker: LivenessTracker) -> None:
    """A new boot says hello (live)."""
    now = time.monotonic()
    await ingest.apply(tracker.alive(NODE, now, retained=False, via="hello", boot_id="boot-2"))


async def test_a_will_after_a_lost_join_loses_no_node_stored_offline(db: Engine) -> None:
    """Heartbeat and will in one batch: the node is offline as stored, with no second
    ``node-lost`` recorded or published, and b's tracker holds it offline by the will."""
    async with _replica(BatchWriter(db)) as (ingest, tracker, published, _):
        await _heartbeat(ingest, tracker)
        await _will(ingest, tracker)
    assert _stored(db) == ("offline", "last-will", [])
    assert published == []
    assert (tracker.state(NODE), tracker.nodes[NODE].reason) == ("offline", "last-will")


async def test_a_new_boot_after_a_lost_join_and_a_will_is_back(db: Engine) -> None:
    """Heartbeat, will and a new boot's hello in one batch: ``node-back`` from offline, once,
    recorded and published (no ``node-lost``), and the tracker holds the node online, judged
    (a heartbeat keeps it so)."""
    async with _replica(BatchWriter(db)) as (ingest, tracker, published, _):
        await _heartbeat(ingest, tracker)
        await _will(ingest, tracker)
        await _hello(ingest, tracker)
    assert _stored(db)[::2] == ("online", ["node-back"])
    assert [e.kind.value for e in published] == ["node-back"]
    assert published[0].data == {"from": "offline", "via": "hello", "rebooted": True}
    assert tracker.state(NODE) == "online"
    assert tracker.nodes[NODE].due is not None


async def test_a_hello_heard_while_the_losing_batch_is_written_brings_the_node_back(
    db: Engine,
) -> None:
    """The join's batch is being written when the new boot's hello arrives (the tracker took
    the node for online already): once the claim is lost the hello is judged from the stored
    offline, so the node is back, stored online and online in the tracker, not left offline
    by its will while it is alive."""
    writing, go = threading.Event(), threading.Event()
    write = BatchWriter(db)

    def held(batch: Batch) -> None:
        writing.set()
        assert go.wait(timeout=15)
        write(batch)

    async with _replica(held) as (ingest, tracker, published, _):
        await _heartbeat(ingest, tracker)
        assert await asyncio.to_thread(writing.wait, 15)
        await _hello(ingest, tracker)
        go.set()
    assert _stored(db)[::2] == ("online", ["node-back"])
    assert [e.kind.value for e in published] == ["node-back"]
    assert tracker.state(NODE) == "online"
    assert tracker.nodes[NODE].due is not None


async def test_a_won_join_takes_what_the_node_said_meanwhile(db_url: str) -> None:
    """A node new to the fleet: its join, then its will, each recorded and published once,
    in order (the will waited for the join's commit)."""
    engine = make_engine(db_url)
    migrate(engine)
    try:
        async with _replica(BatchWriter(engine)) as (ingest, tracker, published, _):
            await _heartbeat(ingest, tracker)
            await _will(ingest, tracker)
        assert _stored(engine) == ("offline", "last-will", ["node-joined", "node-lost"])
        assert [e.kind.value for e in published] == ["node-joined", "node-lost"]
        assert tracker.state(NODE) == "offline"
    finally:
        engine.dispose()
