"""Apply one :class:`~fogmesh.registry.ops.Batch` in one transaction (runs in a worker thread)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, Engine, Table, bindparam, delete, select, update

from fogmesh.registry.db.schema import (
    AppRow,
    EventRow,
    NodeRow,
    TenantRow,
    UsageHistoryRow,
    UsageRow,
    WorkloadRow,
)
from fogmesh.registry.db.upsert import insert_ignore, upsert
from fogmesh.registry.ops import (
    ActualOp,
    AppOp,
    Batch,
    EventOp,
    HeartbeatOp,
    HelloOp,
    LivenessOp,
)

__all__ = ["BatchWriter"]


def _t(model: Any) -> Table:
    table: Table = model.__table__
    return table


NODES, USAGE, HISTORY = _t(NodeRow), _t(UsageRow), _t(UsageHistoryRow)
APPS, WORKLOADS, EVENTS, TENANTS = _t(AppRow), _t(WorkloadRow), _t(EventRow), _t(TenantRow)
_USAGE_KEYS = (
    "cpu_percent",
    "memory_used_bytes",
    "memory_total_bytes",
    "disk_used_bytes",
    "disk_total_bytes",
    "load1",
)

_HB_NODE = (
    update(NODES)
    .where(NODES.c.node == bindparam("b_node"))
    .values(
        last_seen=bindparam("b_at"),
        heartbeat_interval_s=bindparam("b_interval"),
        last_seq=bindparam("b_seq"),
        heartbeat_ts=bindparam("b_ts"),
    )
)


class BatchWriter:
    """Callable that writes a batch to ``engine``; ``history_size`` bounds usage history."""

    def __init__(self, engine: Engine, *, history_size: int = 30) -> None:
        self.engine = engine
        self.history_size = max(1, history_size)

    def __call__(self, batch: Batch) -> None:
        with self.engine.begin() as conn:
            for op in batch.ops:
                _APPLY[type(op)](self, conn, op)
            self._heartbeats(conn, list(batch.heartbeats.values()))

    # -- per operation ---------------------------------------------------------------------

    def _ensure_node(self, conn: Connection, node: str, state: str, at: float) -> None:
        insert_ignore(
            conn,
            NODES,
            [
                {
                    "node": node,
                    "state": state,
                    "labels": {},
                    "boot_id": "",
                    "first_seen": at,
                    "last_seen": at,
                    "state_since": at,
                    "offline_reason": "",
                }
            ],
            keys=["node"],
        )

    def _hello(self, conn: Connection, op: HelloOp) -> None:
        self._ensure_node(conn, op.node, op.state, op.at)
        location = op.facts.get("location") or {}
        conn.execute(
            update(NODES)
            .where(NODES.c.node == op.node)
            .values(
                facts=op.facts,
                arch=op.facts.get("arch"),
                labels=op.facts.get("labels") or {},
                lat=location.get("lat"),
                lon=location.get("lon"),
                boot_id=op.boot_id,
            )
        )

    def _liveness(self, conn: Connection, op: LivenessOp) -> None:
        self._ensure_node(conn, op.node, op.state, op.at)
        values: dict[str, Any] = {
            "state": op.state,
            "state_since": op.at,
            "offline_reason": op.reason,
        }
        if op.boot_id is not None:
            values["boot_id"] = op.boot_id
        if op.state == "online":
            values["last_seen"] = op.at
        conn.execute(update(NODES).where(NODES.c.node == op.node).values(**values))

    def _actual(self, conn: Connection, op: ActualOp) -> None:
        known = {
            row.name: row.first_seen
            for row in conn.execute(
                select(WORKLOADS.c.name, WORKLOADS.c.first_seen).where(WORKLOADS.c.node == op.node)
            )
        }
        conn.execute(delete(WORKLOADS).where(WORKLOADS.c.node == op.node))
        rows = [
            {
                "node": op.node,
                "name": w["name"],
                "tenant": w["tenant"],
                "app": w["app"],
                "component": w["component"],
                "runtime": w.get("runtime", ""),
                "phase": w["phase"],
                "reason": w.get("reason", ""),
                "restarts": w.get("restarts", 0),
                "since": w.get("since", 0.0),
                "first_seen": known.get(w["name"], op.at),
                "updated_at": op.at,
            }
            for w in op.workloads
        ]
        if rows:
            conn.execute(WORKLOADS.insert(), rows)
        self._tenants(conn, {r["tenant"] for r in rows}, op.at)

    def _app(self, conn: Connection, op: AppOp) -> None:
        if op.deleted:
            conn.execute(delete(APPS).where(APPS.c.tenant == op.tenant, APPS.c.name == op.name))
            return
        self._tenants(conn, {op.tenant}, op.at)
        row = {
            "tenant": op.tenant,
            "name": op.name,
            "version": op.version,
            "manifest": op.manifest,
            "created_at": op.at,
            "updated_at": op.at,
        }
        upsert(
            conn,
            APPS,
            [row],
            keys=["tenant", "name"],
            update=["version", "manifest", "updated_at"],
        )

    def _event(self, conn: Connection, op: EventOp) -> None:
        tenant = op.row.get("tenant")
        if tenant:
            self._tenants(conn, {tenant}, op.row.get("received_at", 0.0))
        insert_ignore(conn, EVENTS, [op.row], keys=["id"])

    def _tenants(self, conn: Connection, names: set[str], at: float) -> None:
        insert_ignore(
            conn, TENANTS, [{"name": n, "first_seen": at} for n in sorted(names)], keys=["name"]
        )

    # -- heartbeats, many at once ----------------------------------------------------------

    def _heartbeats(self, conn: Connection, beats: list[HeartbeatOp]) -> None:
        if not beats:
            return
        conn.execute(
            _HB_NODE,
            [
                {
                    "b_node": b.node,
                    "b_at": b.at,
                    "b_interval": b.interval_s,
                    "b_seq": b.seq,
                    "b_ts": b.ts,
                }
                for b in beats
            ],
        )
        latest = [
            {"node": b.node, "ts": b.ts, "seq": b.seq, **{k: b.usage[k] for k in _USAGE_KEYS}}
            for b in beats
        ]
        columns = ["ts", "seq", *_USAGE_KEYS]
        upsert(conn, USAGE, latest, keys=["node"], update=columns)
        ring = [{**row, "slot": row["seq"] % self.history_size} for row in latest]
        upsert(conn, HISTORY, ring, keys=["node", "slot"], update=columns)


_APPLY: dict[type, Callable[[BatchWriter, Connection, Any], None]] = {
    HelloOp: BatchWriter._hello,
    LivenessOp: BatchWriter._liveness,
    ActualOp: BatchWriter._actual,
    AppOp: BatchWriter._app,
    EventOp: BatchWriter._event,
}
