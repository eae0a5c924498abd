"""Batches coalesce per node and write each kind of row at once: the rules on their own, then
the writer on SQLite and PostgreSQL (a join storm is a few statements, and writes the same
rows as the operations one by one would)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, event, select

from fogmesh.registry.db import BatchWriter, migrate
from fogmesh.registry.db.writes import EVENTS, NODES, WORKLOADS
from fogmesh.registry.ops import (
    ActualOp,
    AppOp,
    Batch,
    EventOp,
    HeartbeatOp,
    HelloOp,
    LivenessOp,
    Op,
)
from tests.registry.support import USAGE_ROW


def hello(node: str, at: float, arch: str = "x86_64", boot: str = "b1") -> HelloOp:
    facts = {"device_id": node, "arch": arch, "cpu_count": 1, "memory_bytes": 1, "disk_bytes": 1}
    return HelloOp(node, facts, boot, "online", at)


def event_op(n: int, node: str) -> EventOp:
    row: dict[str, Any] = {"id": f"e{n}", "kind": "node-joined", "tenant": None, "node": node}
    row.update(app=None, workload=None, ts=1.0, source="r", message="", data={}, received_at=1.0)
    return EventOp(row)


def workload(name: str, phase: str = "running") -> dict[str, Any]:
    return {"name": name, "tenant": "t1", "app": "a", "component": "c", "phase": phase}


# -- the rules, without a database ---------------------------------------------------------


def test_the_latest_hello_actual_and_heartbeat_of_a_node_win() -> None:
    batch = Batch.of(
        hello("n", 1.0, arch="x86_64"),
        hello("n", 2.0, arch="aarch64"),
        ActualOp("n", [workload("w1")], 1.0),
        ActualOp("n", [], 2.0),
        HeartbeatOp("n", 1, 1.0, 10.0, USAGE_ROW, 1.0),
        HeartbeatOp("n", 2, 2.0, 10.0, USAGE_ROW, 2.0),
    )
    assert batch.hellos["n"].facts["arch"] == "aarch64"
    assert batch.actuals["n"].workloads == []
    assert batch.heartbeats["n"].seq == 2
    assert batch.coalesced == 3
    assert len(batch) == 3


def test_liveness_changes_merge_into_the_last_keeping_boot_id_and_last_online() -> None:
    batch = Batch.of(
        LivenessOp("n", "online", 1.0, "", "b2"),
        LivenessOp("n", "offline", 2.0, "last-will"),
    )
    merged = batch.liveness["n"]
    assert (merged.state, merged.at, merged.reason, merged.boot_id) == (
        "offline",
        2.0,
        "last-will",
        "b2",
    )
    assert batch.online_at == {"n": 1.0}
    assert batch.joins == {"n": ("online", 1.0)}  # a new node's row is its first sight


def test_apps_keep_their_order_and_events_are_all_kept() -> None:
    deploy = AppOp("t1", "a", "1", {}, 1.0)
    delete = AppOp("t1", "a", "1", {}, 2.0, deleted=True)
    batch = Batch.of(deploy, delete, event_op(1, "n"), event_op(2, "n"))
    assert batch.apps == [deploy, delete]
    assert len(batch.events) == 2
    assert batch.coalesced == 0


# -- the writer, on each database ----------------------------------------------------------


@pytest.fixture
def ready(engine: Engine) -> Engine:
    migrate(engine)
    return engine


@pytest.fixture
def statements(ready: Engine) -> Iterator[list[str]]:
    """Every statement the engine sends (an executemany counts once)."""
    sent: list[str] = []

    def record(*args: Any) -> None:
        sent.append(args[2])

    event.listen(ready, "before_cursor_execute", record)
    yield sent
    event.remove(ready, "before_cursor_execute", record)


def join_storm(nodes: int) -> list[Op | HeartbeatOp]:
    """What the ingest side queues when ``nodes`` nodes say hello at once."""
    ops: list[Op | HeartbeatOp] = []
    for i in range(nodes):
        node = f"n{i:05d}"
        ops += [hello(node, 1.0), LivenessOp(node, "online", 1.0, "hello", "b1")]
        ops += [event_op(i, node), HeartbeatOp(node, 0, 1.0, 10.0, USAGE_ROW, 1.0)]
    return ops


def test_a_join_storm_is_a_few_statements_whatever_its_size(
    ready: Engine, statements: list[str]
) -> None:
    BatchWriter(ready)(Batch.of(*join_storm(10)))
    few = len(statements)
    statements.clear()
    BatchWriter(ready)(Batch.of(*join_storm(2000)))
    assert len(statements) == few <= 12, statements
    with ready.connect() as conn:
        rows = conn.execute(select(NODES.c.state, NODES.c.arch, NODES.c.last_seq)).all()
        events = conn.execute(select(EVENTS.c.id)).all()
    assert len(rows) == 2000
    assert {tuple(r) for r in rows} == {("online", "x86_64", 0)}
    assert len(events) == 2000


def test_a_coalesced_batch_writes_what_the_operations_one_by_one_write(ready: Engine) -> None:
    ops: list[Op | HeartbeatOp] = [
        hello("a", 1.0, boot="b1"),
        LivenessOp("a", "online", 1.0, "hello", "b1"),
        ActualOp("a", [workload("w1"), workload("w2")], 1.0),
        LivenessOp("a", "offline", 2.0, "last-will"),
        hello("a", 3.0, arch="aarch64", boot="b2"),
        LivenessOp("a", "online", 3.0, "hello", "b2"),
        ActualOp("a", [workload("w2", "failed")], 3.0),
        HeartbeatOp("a", 7, 3.0, 10.0, USAGE_ROW, 3.5),
        LivenessOp("b", "stale", 4.0, "late"),
    ]
    one_by_one = [Batch.of(op) for op in ops]
    for batch in one_by_one:
        BatchWriter(ready)(batch)
    expected = _snapshot(ready)
    with ready.begin() as conn:
        conn.execute(WORKLOADS.delete())
        conn.execute(NODES.delete())
    BatchWriter(ready)(Batch.of(*ops))
    got = _snapshot(ready)
    # first_seen of a workload is when its first report was written: one by one, the batch of
    # the first report; coalesced, the report that survived (the same batch, moments later)
    for rows in (expected, got):
        for row in rows["workloads"]:
            row.pop("first_seen")
    assert got == expected


def _snapshot(engine: Engine) -> dict[str, list[dict[str, Any]]]:
    cols = ("node", "state", "arch", "boot_id", "last_seen", "state_since", "offline_reason")
    with engine.connect() as conn:
        nodes = conn.execute(select(*(NODES.c[c] for c in cols)).order_by(NODES.c.node))
        loads = conn.execute(select(WORKLOADS).order_by(WORKLOADS.c.node, WORKLOADS.c.name))
        return {
            "nodes": [dict(r._mapping) for r in nodes],
            "workloads": [dict(r._mapping) for r in loads],
        }
