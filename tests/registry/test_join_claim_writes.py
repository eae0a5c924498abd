"""What a batch that loses a node's join claim records (``Batch.lost``,
``fogmesh.registry.claims``), on SQLite and PostgreSQL, and how the losing replica's writer and
tracker take it. The node's row is stored first by "another replica" (a batch of its own); the
losing batch holds the join as :class:`Ingest.apply` makes it: a liveness change carrying its
:class:`JoinClaim`, the claimed ``node-joined`` and the callback publishing it."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, select, update

from fogmesh.registry.batcher import WriteQueue
from fogmesh.registry.db import BatchWriter, make_engine, migrate
from fogmesh.registry.db.writes import EVENTS, NODES
from fogmesh.registry.liveness import LivenessTracker
from fogmesh.registry.ops import Batch, EventOp, JoinClaim, LivenessOp, LostClaim, Op
from tests.registry.support import write_at_once

NODE = "n1"


@pytest.fixture
def db(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url)
    migrate(engine)
    yield engine
    engine.dispose()


def _stored_by_another(engine: Engine, state: str, reason: str) -> None:
    """The node's row as another replica wrote it: joined (boot-1), then ``state``."""
    writer = BatchWriter(engine)
    writer(Batch.of(LivenessOp(NODE, "online", 100.0, "hello", "boot-1")))
    if state != "online":
        writer(Batch.of(LivenessOp(NODE, state, 110.0, reason)))


def _event(kind: str, at: float) -> dict[str, Any]:
    row: dict[str, Any] = {"id": f"{kind}-{at}", "kind": kind, "tenant": None, "node": NODE}
    row.update(app=None, workload=None, ts=at, source="r-b", message="", data={})
    return {**row, "received_at": at}


def _join(via: str, *, retained: bool = False, boot: str = "boot-2") -> list[Op]:
    """The losing replica's join of the node, as its ingest queues it."""
    claim = JoinClaim(NODE, via, boot, retained, "r-b")
    return [
        LivenessOp(NODE, "online", 200.0, via, boot, join=claim),
        EventOp(_event("node-joined", 200.0), claim=NODE),
    ]


def _node(engine: Engine) -> tuple[str, float, list[str]]:
    """The node's stored state, since when, and its stored events' kinds in order."""
    with engine.connect() as conn:
        row = conn.execute(select(NODES.c.state, NODES.c.state_since)).one()
        kinds = conn.execute(select(EVENTS.c.kind).order_by(EVENTS.c.seq)).scalars()
        return row.state, row.state_since, list(kinds)


@pytest.mark.parametrize(
    "case",
    [
        ("offline", "missed-heartbeats", "hello", False, "online", "offline"),
        ("offline", "last-will", "state", False, "online", "offline"),
        ("stale", "late", "heartbeat", False, "online", "stale"),
        ("offline", "last-will", "heartbeat", False, "offline", None),  # a will's offline stays
        ("offline", "missed-heartbeats", "hello", True, "offline", None),  # retained: no sign
        ("stale", "late", "hello", True, "stale", None),
        ("online", "hello", "hello", False, "online", None),  # the other told its join
        ("unreachable", "partition", "hello", False, "unreachable", None),  # its link tells
    ],
)
def test_a_lost_claim_records_what_the_stored_state_calls_for(
    db: Engine, case: tuple[str, str, str, bool, str, str | None]
) -> None:
    """``case``: the stored state and reason, the join's ``via`` and whether it was retained,
    the state stored after the batch, and the ``from`` of the ``node-back`` told (None: none)."""
    stored, reason, via, retained, after, told = case
    _stored_by_another(db, stored, reason)
    _, since, kinds = _node(db)
    batch = Batch.of(*_join(via, retained=retained))
    BatchWriter(db)(batch)
    assert batch.created == set()
    lost = batch.lost[NODE]
    assert (lost.state, lost.reason, lost.boot_id) == (stored, reason, "boot-1")
    if told is None:
        assert lost.told is None
        assert _node(db) == (after, since, kinds)  # nothing written: the stored state stands
        return
    assert lost.told is not None
    assert lost.told.kind.value == "node-back"
    assert lost.told.source == "r-b"
    assert lost.told.data == {"from": told, "via": via, "rebooted": True}
    state, since_now, kinds_now = _node(db)
    assert (state, since_now) == ("online", 200.0)
    assert kinds_now == [*kinds, "node-back"]  # in the join's place, not the join


@pytest.mark.parametrize(
    "case",
    [("online", "online"), ("stale", "stale"), ("unreachable", "unreachable"), ("offline", None)],
)
def test_a_will_of_a_node_not_known_here_tells_the_stored_nodes_loss(
    db: Engine, case: tuple[str, str | None]
) -> None:
    """The will of a node neither this replica's tracker nor its snapshot knows, claimed: the
    row another replica stored, not offline, is lost (``node-lost``, ``data.from`` the stored
    state) with the will's ``offline``; stored offline, nothing is written; a node never
    stored is created offline, silently (its will tells no loss of a node never joined)."""
    stored, told = case
    _stored_by_another(db, stored, "partition" if stored == "unreachable" else "late")
    _, since, kinds = _node(db)
    claim = JoinClaim(NODE, "will", "boot-1", False, "r-b")
    batch = Batch.of(LivenessOp(NODE, "offline", 200.0, "last-will", "boot-1", join=claim))
    BatchWriter(db)(batch)
    lost = batch.lost[NODE]
    if told is None:
        assert lost.told is None
        assert _node(db) == ("offline", since, kinds)
        return
    assert lost.told is not None
    assert (lost.told.kind.value, lost.told.data) == (
        "node-lost",
        {"from": told, "reason": "last-will"},
    )
    assert _node(db) == ("offline", 200.0, [*kinds, "node-lost"])
    lost_kinds = [*kinds, "node-lost"]
    new = JoinClaim("n2", "will", "boot-9", False, "r-b")
    fresh = Batch.of(LivenessOp("n2", "offline", 300.0, "last-will", "boot-9", join=new))
    BatchWriter(db)(fresh)
    assert fresh.created == {"n2"}
    with db.connect() as conn:
        assert conn.execute(select(NODES.c.state).where(NODES.c.node == "n2")).scalar() == "offline"
        assert list(conn.execute(select(EVENTS.c.node))) == [(NODE,)] * len(lost_kinds)


def test_a_won_claim_records_the_join(db: Engine) -> None:
    batch = Batch.of(*_join("hello"))
    BatchWriter(db)(batch)
    assert batch.created == {NODE}
    assert batch.lost == {}
    assert _node(db) == ("online", 200.0, ["node-joined"])


def test_a_change_after_a_lost_join_in_one_batch_is_written_after_its_back(db: Engine) -> None:
    """Back and lost again within one batch: both told, in order, and the node offline (the
    later change absorbed the join's; its ``node-lost`` is the batch's own event)."""
    _stored_by_another(db, "offline", "last-will")
    will = LivenessOp(NODE, "offline", 201.0, "last-will", "boot-2")
    batch = Batch.of(*_join("hello"), will, EventOp(_event("node-lost", 201.0)))
    BatchWriter(db)(batch)
    assert _node(db)[0] == "offline"
    assert _node(db)[2] == ["node-back", "node-lost"]


async def test_the_writer_tells_a_lost_claim_in_its_callbacks_place(db: Engine) -> None:
    """After the commit: the claim's callback is not called; the writer's ``lost`` is, once,
    where the callback was (events are published in the order they are recorded)."""
    _stored_by_another(db, "offline", "missed-heartbeats")
    called: list[Any] = []
    writer = WriteQueue(BatchWriter(db), interval=0.01)
    writer.lost = lambda node, lost: called.append((node, lost))
    for op in _join("hello"):
        writer.put(op)
    writer.after_commit(functools.partial(called.append, "join"), claim=NODE)
    writer.after_commit(functools.partial(called.append, "join"), claim=NODE)
    writer.after_commit(functools.partial(called.append, "next"))
    task = asyncio.create_task(writer.run())
    try:
        await writer.drained(timeout=15)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert len(called) == 2
    assert called[1] == "next"
    node, lost = called[0]
    assert node == NODE
    assert isinstance(lost, LostClaim)
    assert lost.told is not None
    assert lost.told.data["from"] == "offline"


def _joined(tracker: LivenessTracker, *, retained: bool, via: str = "hello") -> None:
    (tr,) = tracker.alive(NODE, 100.0, retained=retained, via=via, boot_id="boot-2")
    assert tr.kind is not None
    assert tr.kind.value == "node-joined"
    assert tr.retained is retained


def test_the_tracker_takes_a_node_as_stored_when_the_claim_told_nothing() -> None:
    """A will's offline met by a heartbeat: offline here too, unjudged; the will's rule holds
    (another heartbeat brings nothing back, a live hello does)."""
    tracker = LivenessTracker(missed=3, default_interval=1.0)
    _joined(tracker, retained=False, via="heartbeat")
    tracker.settle(NODE, "offline", "last-will", seen=50.0, now=100.1)
    assert tracker.state(NODE) == "offline"
    assert tracker.tick(1000.0) == []
    assert tracker.alive(NODE, 1000.0, retained=False, via="heartbeat") == []
    (back,) = tracker.alive(NODE, 1001.0, retained=False, via="hello", boot_id="boot-2")
    assert back.data["from"] == "offline"


def test_a_node_stored_stale_is_judged_by_its_stored_sign_of_life() -> None:
    """Known from a retained hello only: stale as stored, and lost once silent ``missed``
    intervals from the stored sign of life, not from the join's moment."""
    tracker = LivenessTracker(missed=3, default_interval=1.0)
    _joined(tracker, retained=True)
    tracker.settle(NODE, "stale", "", seen=98.0, now=100.1)
    assert tracker.state(NODE) == "stale"
    assert tracker.tick(100.9) == []
    (lost,) = tracker.tick(101.1)
    assert (lost.kind is not None, lost.new, lost.data["from"]) == (True, "offline", "stale")


def test_the_tracker_keeps_what_happened_since_the_join() -> None:
    """A change made here after the join (the will took it offline) is the tracker's own, and
    a node stored online is online: ``settle`` leaves both."""
    tracker = LivenessTracker(missed=3, default_interval=1.0)
    _joined(tracker, retained=False)
    tracker.last_will(NODE, 100.05, boot_id="boot-2")
    tracker.settle(NODE, "stale", "", seen=98.0, now=100.1)
    assert tracker.state(NODE) == "offline"
    other = LivenessTracker(missed=3, default_interval=1.0)
    _joined(other, retained=True)
    other.settle(NODE, "online", "", seen=98.0, now=100.1)
    other.settle(NODE, "unreachable", "partition", seen=98.0, now=100.1)
    assert other.state(NODE) == "online"


def test_batches_claiming_the_same_nodes_at_once_lose_quietly(db: Engine) -> None:
    """Two replicas' batches join the same 300 new nodes at once (other orders, two threads):
    each node's row is created by one, which records its join; the other meets it online and
    records nothing of it (no second join, no ``node-back``), on PostgreSQL without a deadlock
    (both create rows in node order, so the later one waits for the earlier's rows in that
    order, never in a cycle)."""
    nodes = [f"n{i:03d}" for i in range(300)]
    batches = []
    for k, order in enumerate([nodes, nodes[::-1]]):
        ops: list[Op] = []
        for n in order:
            claim = JoinClaim(n, "hello", f"boot-{n}", False, f"r{k}")
            row = {**_event("node-joined", 1.0), "id": f"{k}-{n}", "node": n}
            ops += [LivenessOp(n, "online", 1.0, "hello", join=claim), EventOp(row, claim=n)]
        batches.append(Batch.of(*ops))
    engines = [db, make_engine(str(db.url.render_as_string(hide_password=False)))]
    try:
        write_at_once(engines, batches)
    finally:
        engines[1].dispose()
    first, second = batches
    assert first.created.isdisjoint(second.created)
    assert first.created | second.created == set(nodes)
    for batch in batches:
        assert set(batch.lost) == set(nodes) - batch.created
        assert all(lost.state == "online" and lost.told is None for lost in batch.lost.values())
    with db.connect() as conn:
        kinds = list(conn.execute(select(EVENTS.c.kind)).scalars())
    assert kinds == ["node-joined"] * len(nodes)


def test_a_lost_claim_waits_for_the_change_another_replica_is_committing(db: Engine) -> None:
    """Stored offline; another replica's batch holds the node's row (PostgreSQL: locked,
    ``SELECT ... FOR UPDATE``; SQLite: its write lock) and brings the node back (``online``
    and ``node-back``) while this replica's batch loses its join claim. That batch's read of
    the row waits for the other to commit and takes the node as it is then, online: no second
    ``node-back``, and its join's ``online`` is not written."""
    _stored_by_another(db, "offline", "missed-heartbeats")
    other = make_engine(str(db.url.render_as_string(hide_password=False)))
    batch = Batch.of(*_join("hello"))
    try:
        with other.connect() as conn, concurrent.futures.ThreadPoolExecutor(1) as pool:
            tx = conn.begin()
            row = select(NODES.c.state).where(NODES.c.node == NODE)
            assert conn.execute(row.with_for_update()).scalar() == "offline"
            back = update(NODES).where(NODES.c.node == NODE)
            back = back.values(state="online", offline_reason="", state_since=150.0)
            sqlite = conn.dialect.name == "sqlite"
            if sqlite:
                conn.execute(back)  # SQLite locks by writing
            losing = pool.submit(BatchWriter(db), batch)
            time.sleep(0.5)
            assert not losing.done()  # it waits on the row the other replica holds
            if not sqlite:
                conn.execute(back)  # while the losing batch's read waits on the row
            conn.execute(EVENTS.insert(), [_event("node-back", 150.0)])
            tx.commit()
            losing.result(timeout=30)
    finally:
        other.dispose()
    assert batch.created == set()
    lost = batch.lost[NODE]
    assert (lost.state, lost.told) == ("online", None)
    assert _node(db) == ("online", 150.0, ["node-back"])
