"""The storage layer on SQLite and PostgreSQL: schema, upgrade, writes, reads, pagination."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import Engine, inspect, text

from fogmesh.protocol import WorkloadPhase
from fogmesh.protocol.queries import (
    ListEvents,
    ListNodes,
    ListRegistryApps,
    ListWorkloads,
    NearFilter,
)
from fogmesh.registry.cursor import BadCursor
from fogmesh.registry.db import BatchWriter, migrate, reads
from fogmesh.registry.db.schema import SCHEMA_VERSION
from fogmesh.registry.ops import ActualOp, AppOp, Batch, EventOp, HeartbeatOp, HelloOp, Op

USAGE = {
    "cpu_percent": 5.0,
    "memory_used_bytes": 5 << 30,  # more than 32 bits: BIGINT on PostgreSQL
    "memory_total_bytes": 16 << 30,
    "disk_used_bytes": 1 << 40,
    "disk_total_bytes": 2 << 40,
    "load1": 0.5,
}
CITIES = {"munich": (48.137, 11.575), "augsburg": (48.371, 10.898), "berlin": (52.52, 13.405)}


def hello(node: str, *, arch: str = "x86_64", city: str = "munich", **labels: str) -> HelloOp:
    lat, lon = CITIES[city]
    facts = {
        "device_id": node,
        "arch": arch,
        "cpu_count": 4,
        "memory_bytes": 16 << 30,
        "disk_bytes": 2 << 40,
        "labels": labels,
        "location": {"lat": lat, "lon": lon},
    }
    return HelloOp(node, facts, "boot1", "online", time.time())


def workload(name: str, tenant: str, app: str, phase: str = "running") -> dict[str, object]:
    return {
        "name": name,
        "tenant": tenant,
        "app": app,
        "component": "c",
        "runtime": "docker",
        "phase": phase,
    }


def write(engine: Engine, *ops: Op, beats: list[HeartbeatOp] | None = None) -> None:
    BatchWriter(engine, history_size=4)(Batch.of(*ops, *(beats or [])))


def test_schema_is_created_and_migrate_is_idempotent(engine: Engine) -> None:
    assert migrate(engine) == []
    assert migrate(engine) == []
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version FROM schema_version")).scalar() == SCHEMA_VERSION
    tables = set(inspect(engine).get_table_names())
    assert {"nodes", "node_usage", "usage_history", "apps", "workloads", "events"} <= tables


def test_an_older_schema_is_upgraded_additively(engine: Engine) -> None:
    with engine.begin() as conn:  # the nodes table as an imagined earlier version had it
        conn.execute(text("CREATE TABLE nodes (node VARCHAR(128) PRIMARY KEY, state VARCHAR(16))"))
        conn.execute(text("INSERT INTO nodes (node, state) VALUES ('old', 'online')"))
    added = migrate(engine)
    assert "nodes.offline_reason" in added
    assert "nodes.labels" in added
    records = reads.load_liveness(engine)
    assert [(r.node, r.state, r.reason) for r in records] == [("old", "online", "")]


def test_nodes_filters_and_pagination(engine: Engine) -> None:
    migrate(engine)
    write(
        engine,
        hello("a1", zone="z1"),
        hello("a2", arch="aarch64", city="augsburg", zone="z1"),
        hello("a3", arch="aarch64", city="berlin", zone="z2"),
        hello("a4", zone="z1"),
        hello("a5", zone="z1"),
        beats=[HeartbeatOp("a1", 7, 1.0, 10.0, USAGE, 2.0)],
    )
    page1, cursor = reads.list_nodes(engine, ListNodes(limit=2, labels={"zone": "z1"}))
    assert [n.node for n in page1] == ["a1", "a2"]
    assert cursor is not None
    page2, cursor2 = reads.list_nodes(
        engine, ListNodes(limit=2, labels={"zone": "z1"}, cursor=cursor)
    )
    assert [n.node for n in page2] == ["a4", "a5"]
    assert cursor2 is None
    arm, _ = reads.list_nodes(engine, ListNodes(arch="aarch64"))
    assert [n.node for n in arm] == ["a2", "a3"]
    near, _ = reads.list_nodes(engine, ListNodes(near=NearFilter(lat=48.137, lon=11.575, km=70)))
    assert [n.node for n in near] == ["a1", "a2", "a4", "a5"]  # Augsburg is ~57 km away
    assert near[1].distance_km is not None
    assert 50 < near[1].distance_km < 65
    assert page1[0].usage is not None
    assert page1[0].usage.memory_used_bytes == 5 << 30
    with pytest.raises(BadCursor):
        reads.list_nodes(engine, ListNodes(cursor="garbage!"))


def test_usage_history_is_a_bounded_ring(engine: Engine) -> None:
    migrate(engine)
    write(engine, hello("h"))
    for seq in range(10):
        write(engine, beats=[HeartbeatOp("h", seq, 100.0 + seq, 1.0, USAGE, 200.0 + seq)])
    node = reads.get_node(engine, "h", 100)
    assert node is not None
    assert [s.seq for s in node.history] == [9, 8, 7, 6]
    assert node.last_seq == 9
    assert reads.get_node(engine, "nope", 1) is None


def test_workloads_apps_and_events_are_tenant_scoped(engine: Engine) -> None:
    migrate(engine)
    now = time.time()
    write(
        engine,
        hello("n1"),
        ActualOp("n1", [workload("w-a", "ta", "app1"), workload("w-b", "tb", "app2")], now),
        AppOp("ta", "app1", "1", {"name": "app1"}, now),
        AppOp("tb", "app2", "3", {"name": "app2"}, now),
        EventOp(_event("e1", "app-deployed", "ta", now)),
        EventOp(_event("e2", "app-deployed", "tb", now)),
        EventOp(_event("e3", "node-joined", None, now)),
        EventOp(_event("e3", "node-joined", None, now)),  # a duplicate delivery
    )
    wl, _ = reads.list_workloads(engine, "ta", ListWorkloads())
    assert [w.name for w in wl] == ["w-a"]
    apps, _ = reads.list_apps(engine, "ta", ListRegistryApps())
    assert [(a.name, a.version) for a in apps] == [("app1", "1")]
    assert reads.get_app(engine, "ta", "app2") is None
    got = reads.get_app(engine, "tb", "app2")
    assert got is not None
    assert got.manifest == {"name": "app2"}
    events, _ = reads.list_events(engine, "ta", ListEvents())
    assert [e.id for e in events] == ["e1", "e3"]
    # actual replaces the node's set, keeping first_seen of workloads that stay
    first = wl[0].first_seen
    write(engine, ActualOp("n1", [workload("w-a", "ta", "app1", "failed")], now + 5))
    wl, _ = reads.list_workloads(engine, "ta", ListWorkloads(phase=WorkloadPhase.FAILED))
    assert [(w.name, w.first_seen, w.updated_at) for w in wl] == [("w-a", first, now + 5)]
    assert reads.list_workloads(engine, "tb", ListWorkloads())[0] == []
    write(engine, AppOp("ta", "app1", "1", {}, now, deleted=True))
    assert reads.list_apps(engine, "ta", ListRegistryApps())[0] == []


def test_events_since_and_pagination(engine: Engine) -> None:
    migrate(engine)
    write(engine, *[EventOp(_event(f"e{i}", "node-joined", None, 1000.0 + i)) for i in range(7)])
    page, cursor = reads.list_events(engine, "t", ListEvents(since=1002.0, limit=3))
    assert [e.id for e in page] == ["e2", "e3", "e4"]
    page, cursor = reads.list_events(engine, "t", ListEvents(since=1002.0, limit=3, cursor=cursor))
    assert [e.id for e in page] == ["e5", "e6"]
    assert cursor is None


def _event(eid: str, kind: str, tenant: str | None, ts: float) -> dict[str, object]:
    return {
        "id": eid,
        "kind": kind,
        "tenant": tenant,
        "node": None,
        "app": None,
        "workload": None,
        "ts": ts,
        "source": "test",
        "message": "",
        "data": {},
        "received_at": ts,
    }
