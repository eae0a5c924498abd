"""Apply one :class:`~fogmesh.registry.ops.Batch` in one transaction (runs in a worker thread).

Each kind of row is one ``executemany`` of one statement compiled once (bound parameters, no
ORM objects): the cost of a batch grows with its rows, not with a statement per operation. The
heartbeats, most of every batch, go as whole-batch statements
(:mod:`~fogmesh.registry.db.heartbeats`).

A batch that loses a node's join claim (another replica created the row first) reads the row
it met, locked until its commit, and records what that state calls for in the join's place
(:mod:`~fogmesh.registry.claims`): a ``node-back`` with the join's ``online`` (a will's claim:
a ``node-lost`` with its ``offline``), or nothing at all, the claimed liveness included, so the
stored state stands (``Batch.lost``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from functools import cache
from typing import Any

from sqlalchemy import JSON, Connection, Engine, Table, bindparam, delete, select, update
from sqlalchemy.sql.dml import Update

from fogmesh.registry.claims import told_instead
from fogmesh.registry.db import join_pg
from fogmesh.registry.db.heartbeats import write_heartbeats
from fogmesh.registry.db.schema import (
    AppRow,
    EventRow,
    NodeRow,
    TenantRow,
    UsageHistoryRow,
    UsageRow,
    WorkloadRow,
)
from fogmesh.registry.db.upsert import insert_ignore, insert_new, upsert
from fogmesh.registry.events import event_row
from fogmesh.registry.ops import (
    ActualOp,
    AppOp,
    Batch,
    EventOp,
    HeartbeatOp,
    HelloOp,
    LivenessOp,
    LostClaim,
)

__all__ = ["BatchWriter"]


def _t(model: Any) -> Table:
    table: Table = model.__table__
    return table


NODES, USAGE, HISTORY = _t(NodeRow), _t(UsageRow), _t(UsageHistoryRow)
APPS, WORKLOADS, EVENTS, TENANTS = _t(AppRow), _t(WorkloadRow), _t(EventRow), _t(TenantRow)
_HELLO_NODE = (
    update(NODES)
    .where(NODES.c.node == bindparam("h_node"))
    .values(
        facts=bindparam("h_facts", type_=JSON),
        arch=bindparam("h_arch"),
        labels=bindparam("h_labels", type_=JSON),
        lat=bindparam("h_lat"),
        lon=bindparam("h_lon"),
        boot_id=bindparam("h_boot"),
    )
)
_IN_CHUNK = 500
"""Nodes per ``IN (...)`` list (SQLite allows 32,766 parameters; keep statements small)."""


@cache
def _liveness_update(with_boot_id: bool, with_seen: bool) -> Update:
    """The liveness ``UPDATE`` of nodes whose change names a boot id / was seen online."""
    values: dict[str, Any] = {
        "state": bindparam("l_state"),
        "state_since": bindparam("l_at"),
        "offline_reason": bindparam("l_reason"),
    }
    if with_boot_id:
        values["boot_id"] = bindparam("l_boot")
    if with_seen:
        values["last_seen"] = bindparam("l_seen")
    return update(NODES).where(NODES.c.node == bindparam("l_node")).values(**values)


def _chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    for i in range(0, len(items), _IN_CHUNK):
        yield items[i : i + _IN_CHUNK]


class BatchWriter:
    """Callable that writes a batch to ``engine``; ``history_size`` bounds usage history."""

    def __init__(self, engine: Engine, *, history_size: int = 30) -> None:
        self.engine = engine
        self.history_size = max(1, history_size)

    def __call__(self, batch: Batch) -> None:
        with self.engine.begin() as conn:
            self._nodes(conn, batch)
            self._tenants(conn, _tenants_of(batch))
            self._actuals(conn, list(batch.actuals.values()))
            for op in batch.apps:
                self._app(conn, op)
            events = [row for op in batch.events if (row := _recorded(op, batch)) is not None]
            events += _wills_told(batch)
            if conn.dialect.name == "postgresql":
                join_pg.insert_events(conn, events)
            else:
                insert_ignore(conn, EVENTS, events, keys=["id"])
            self._heartbeats(conn, list(batch.heartbeats.values()))

    # -- nodes: new rows, liveness, facts ---------------------------------------------------

    def _nodes(self, conn: Connection, batch: Batch) -> None:
        """Create the nodes never seen (noting in ``batch.created`` which this transaction
        created), then record their liveness and their facts. New rows go in node order, so
        two replicas' batches creating some of the same nodes wait on each other's rows in
        one order, never in a cycle (a deadlock on PostgreSQL)."""
        joins = sorted(batch.joins.items())
        new = [_node_row(node, state, at) for node, (state, at) in joins]
        if conn.dialect.name == "postgresql":  # one statement per kind (see join_pg)
            batch.created = join_pg.insert_nodes(conn, new)
            self._lost_claims(conn, batch)
            liveness = [_liveness_params(op, batch.online_at.get(op.node)) for op in _told(batch)]
            join_pg.update_liveness(conn, liveness)
            join_pg.update_hellos(conn, [_hello_params(op) for op in batch.hellos.values()])
            return
        batch.created = insert_new(conn, NODES, new, key="node")
        self._lost_claims(conn, batch)
        groups: dict[tuple[bool, bool], list[dict[str, Any]]] = {}
        for op in _told(batch):
            seen = batch.online_at.get(op.node)
            row = _liveness_params(op, seen)
            groups.setdefault((op.boot_id is not None, seen is not None), []).append(row)
        for (with_boot_id, with_seen), rows in groups.items():
            conn.execute(_liveness_update(with_boot_id, with_seen), rows)
        if batch.hellos:
            conn.execute(_HELLO_NODE, [_hello_params(op) for op in batch.hellos.values()])

    def _lost_claims(self, conn: Connection, batch: Batch) -> None:
        """Note in ``batch.lost`` the claims it lost: the row each met (locked until the
        commit, so what is written next is written over what was read) and what it tells."""
        batch.lost = {}
        lost = sorted(set(batch.claims) - batch.created)
        cols = (NODES.c.node, NODES.c.state, NODES.c.offline_reason, NODES.c.boot_id)
        for chunk in _chunks(lost):
            query = select(*cols, NODES.c.last_seen).where(NODES.c.node.in_(chunk))
            for node, state, reason, boot, seen in conn.execute(
                query.order_by(NODES.c.node).with_for_update()  # SQLite: its write lock
            ):
                told = told_instead(batch.claims[node], state, reason or "", boot or "")
                batch.lost[node] = LostClaim(state, reason or "", boot or "", seen, told)

    # -- workloads and apps -----------------------------------------------------------------

    def _actuals(self, conn: Connection, ops: list[ActualOp]) -> None:
        """Replace each reporting node's workloads, keeping when each was first seen."""
        if not ops:
            return
        nodes = [op.node for op in ops]
        known: dict[tuple[str, str], float] = {}
        for chunk in _chunks(nodes):
            cols = (WORKLOADS.c.node, WORKLOADS.c.name, WORKLOADS.c.first_seen)
            for row in conn.execute(select(*cols).where(WORKLOADS.c.node.in_(chunk))):
                known[(row.node, row.name)] = row.first_seen
            conn.execute(delete(WORKLOADS).where(WORKLOADS.c.node.in_(chunk)))
        rows = [_workload_row(op, w, known) for op in ops for w in op.workloads]
        if rows:
            conn.execute(WORKLOADS.insert(), rows)

    def _app(self, conn: Connection, op: AppOp) -> None:
        if op.deleted:
            conn.execute(delete(APPS).where(APPS.c.tenant == op.tenant, APPS.c.name == op.name))
            return
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

    def _tenants(self, conn: Connection, names: dict[str, float]) -> None:
        rows = [{"name": n, "first_seen": names[n]} for n in sorted(names)]
        insert_ignore(conn, TENANTS, rows, keys=["name"])

    # -- heartbeats, many at once ----------------------------------------------------------

    def _heartbeats(self, conn: Connection, beats: list[HeartbeatOp]) -> None:
        write_heartbeats(conn, beats, history_size=self.history_size)


def _told(batch: Batch) -> list[LivenessOp]:
    """The liveness changes to write: all but a lost join's that tells nothing (a change that
    followed the join in the batch is written: it has its own event, or is silent by rule)."""
    out = []
    for op in batch.liveness.values():
        lost = batch.lost.get(op.node) if op.join is not None else None
        if lost is None or lost.told is not None:
            out.append(op)
    return out


def _recorded(op: EventOp, batch: Batch) -> dict[str, Any] | None:
    """The row ``op`` records: its own, or for a lost claim what the claim tells instead."""
    if batch.won(op.claim):
        return op.row
    lost = batch.lost.get(op.claim or "")
    if lost is None or lost.told is None:
        return None
    return event_row(lost.told, None, op.row["received_at"])


def _wills_told(batch: Batch) -> list[dict[str, Any]]:
    """The rows of the losses the batch's lost will claims tell (they have no ``EventOp``; the
    node's later changes wait for the commit, so nothing of it follows in the batch)."""
    wills = [(node, lost.told) for node, lost in batch.lost.items() if lost.told is not None]
    return [
        event_row(told, None, batch.liveness[node].at)
        for node, told in wills
        if batch.claims[node].via == "will"
    ]


def _node_row(node: str, state: str, at: float) -> dict[str, Any]:
    """The row of a node never seen before; its facts and liveness are written next."""
    return {
        "node": node,
        "state": state,
        "labels": {},
        "boot_id": "",
        "first_seen": at,
        "last_seen": at,
        "state_since": at,
        "offline_reason": "",
    }


def _liveness_params(op: LivenessOp, seen: float | None) -> dict[str, Any]:
    row: dict[str, Any] = {
        "l_node": op.node,
        "l_state": op.state,
        "l_at": op.at,
        "l_reason": op.reason,
    }
    if op.boot_id is not None:
        row["l_boot"] = op.boot_id
    if seen is not None:
        row["l_seen"] = seen
    return row


def _hello_params(op: HelloOp) -> dict[str, Any]:
    location = op.facts.get("location") or {}
    return {
        "h_node": op.node,
        "h_facts": op.facts,
        "h_arch": op.facts.get("arch"),
        "h_labels": op.facts.get("labels") or {},
        "h_lat": location.get("lat"),
        "h_lon": location.get("lon"),
        "h_boot": op.boot_id,
    }


def _workload_row(
    op: ActualOp, w: dict[str, Any], known: dict[tuple[str, str], float]
) -> dict[str, Any]:
    return {
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
        "first_seen": known.get((op.node, w["name"]), op.at),
        "updated_at": op.at,
    }


def _tenants_of(batch: Batch) -> dict[str, float]:
    """Every tenant the batch names, with when it was first named."""
    names: dict[str, float] = {}
    for actual in batch.actuals.values():
        for w in actual.workloads:
            names.setdefault(w["tenant"], actual.at)
    for app in batch.apps:
        if not app.deleted:
            names.setdefault(app.tenant, app.at)
    for event in batch.events:
        tenant = event.row.get("tenant")
        if tenant:
            names.setdefault(tenant, event.row.get("received_at", 0.0))
    return names
