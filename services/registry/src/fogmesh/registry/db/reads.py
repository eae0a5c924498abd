"""Read the registry's tables into the query replies' models (sync; run in a worker thread).

Every list is keyset-paginated on its sort key; filters SQL cannot express portably (labels,
exact distance) are applied in Python over chunks, so a page is always full unless it is the
last one.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, Row, Select, and_, or_, select

from fogmesh.protocol import Event
from fogmesh.protocol.queries import (
    ListEvents,
    ListNodes,
    ListRegistryApps,
    ListWorkloads,
    NodeInfo,
    RegistryAppInfo,
    UsageSample,
    WorkloadInfo,
)
from fogmesh.registry.cursor import decode_cursor, encode_cursor
from fogmesh.registry.db.writes import APPS, EVENTS, HISTORY, NODES, USAGE, WORKLOADS
from fogmesh.registry.geo import bounding_box, haversine_km

__all__ = [
    "NodeLiveRecord",
    "get_app",
    "get_node",
    "list_apps",
    "list_events",
    "list_nodes",
    "list_workloads",
    "load_liveness",
]

_CHUNK = 500
_USAGE_COLS = (
    "cpu_percent",
    "memory_used_bytes",
    "memory_total_bytes",
    "disk_used_bytes",
    "disk_total_bytes",
    "load1",
)


@dataclass(frozen=True, slots=True)
class NodeLiveRecord:
    """What the liveness tracker needs of a node at start."""

    node: str
    state: str
    interval_s: float | None
    boot_id: str
    reason: str


def load_liveness(engine: Engine) -> list[NodeLiveRecord]:
    """Every node's stored liveness."""
    cols = (NODES.c.node, NODES.c.state, NODES.c.heartbeat_interval_s, NODES.c.boot_id)
    with engine.connect() as conn:
        rows = conn.execute(select(*cols, NODES.c.offline_reason)).all()
    return [NodeLiveRecord(r[0], r[1], r[2], r[3] or "", r[4] or "") for r in rows]


def _usage(row: Row[Any], prefix: str = "u_") -> dict[str, Any] | None:
    mapping = row._mapping
    if mapping.get(prefix + "ts") is None:
        return None
    return {c: mapping[prefix + c] for c in _USAGE_COLS}


def _node_info(row: Row[Any], distance: float | None = None) -> NodeInfo:
    m = row._mapping
    location = None
    if m["lat"] is not None and m["lon"] is not None:
        location = {"lat": m["lat"], "lon": m["lon"]}
    return NodeInfo.model_validate(
        {
            "node": m["node"],
            "state": m["state"],
            "facts": m["facts"],
            "labels": m["labels"] or {},
            "location": location,
            "boot_id": m["boot_id"] or "",
            "first_seen": m["first_seen"],
            "last_seen": m["last_seen"],
            "state_since": m["state_since"],
            "heartbeat_interval_s": m["heartbeat_interval_s"],
            "last_seq": m["last_seq"],
            "usage": _usage(row),
            "distance_km": distance,
            "age_s": _age(m["state"], m["last_seen"]),
        }
    )


def _age(state: str, last_seen: float | None) -> float | None:
    """How old a view of a node that is not online is (None for an online node)."""
    if state == "online" or last_seen is None:
        return None
    return round(max(0.0, time.time() - last_seen), 3)


def _node_select() -> Select[Any]:
    usage = [USAGE.c[c].label("u_" + c) for c in ("ts", *_USAGE_COLS)]
    return select(NODES, *usage).select_from(NODES.outerjoin(USAGE, USAGE.c.node == NODES.c.node))


def list_nodes(engine: Engine, query: ListNodes) -> tuple[list[NodeInfo], str | None]:
    """A page of nodes matching ``query``, ordered by node id."""
    stmt = _node_select()
    if query.arch is not None:
        stmt = stmt.where(NODES.c.arch == query.arch)
    if query.state is not None:
        stmt = stmt.where(NODES.c.state == query.state)
    near = query.near
    if near is not None:
        stmt = stmt.where(NODES.c.lat.is_not(None), NODES.c.lon.is_not(None))
        box = bounding_box(near.lat, near.lon, near.km)
        if box is not None:
            stmt = stmt.where(NODES.c.lat.between(box[0], box[1]))
            stmt = stmt.where(NODES.c.lon.between(box[2], box[3]))
    after = decode_cursor("nodes", query.cursor, (str,))[0] if query.cursor else None
    found: list[NodeInfo] = []
    more = False
    for row in _chunks(engine, stmt, NODES.c.node, after):
        m = row._mapping
        labels = m["labels"] or {}
        if any(labels.get(k) != v for k, v in query.labels.items()):
            continue
        distance = None
        if near is not None:
            distance = haversine_km(near.lat, near.lon, m["lat"], m["lon"])
            if distance > near.km:
                continue
        if len(found) == query.limit:
            more = True
            break
        found.append(_node_info(row, distance))
    cursor = encode_cursor("nodes", [found[-1].node]) if more and found else None
    return found, cursor


def _chunks(engine: Engine, stmt: Select[Any], key: Any, after: str | None) -> Iterator[Row[Any]]:
    """Rows of ``stmt`` ordered by ``key`` after ``after``, fetched ``_CHUNK`` at a time."""
    while True:
        page = stmt.order_by(key).limit(_CHUNK)
        if after is not None:
            page = page.where(key > after)
        with engine.connect() as conn:
            rows = conn.execute(page).all()
        yield from rows
        if len(rows) < _CHUNK:
            return
        after = rows[-1]._mapping[key.name]


def get_node(engine: Engine, node: str, history: int) -> NodeInfo | None:
    """One node with up to ``history`` recent usage samples (newest first)."""
    with engine.connect() as conn:
        row = conn.execute(_node_select().where(NODES.c.node == node)).first()
        if row is None:
            return None
        samples = conn.execute(
            select(HISTORY)
            .where(HISTORY.c.node == node)
            .order_by(HISTORY.c.ts.desc(), HISTORY.c.seq.desc())
            .limit(history)
        ).all()
    info = _node_info(row)
    info.history = [
        UsageSample(
            ts=s._mapping["ts"],
            seq=s._mapping["seq"],
            usage={c: s._mapping[c] for c in _USAGE_COLS},
        )
        for s in samples
    ]
    return info


def list_workloads(
    engine: Engine, tenant: str, query: ListWorkloads
) -> tuple[list[WorkloadInfo], str | None]:
    """A page of ``tenant``'s workloads, ordered by (node, name)."""
    stmt = select(WORKLOADS).where(WORKLOADS.c.tenant == tenant)
    if query.app is not None:
        stmt = stmt.where(WORKLOADS.c.app == query.app)
    if query.node is not None:
        stmt = stmt.where(WORKLOADS.c.node == query.node)
    if query.phase is not None:
        stmt = stmt.where(WORKLOADS.c.phase == query.phase.value)
    if query.cursor:
        node, name = decode_cursor("workloads", query.cursor, (str, str))
        stmt = stmt.where(
            or_(WORKLOADS.c.node > node, and_(WORKLOADS.c.node == node, WORKLOADS.c.name > name))
        )
    stmt = stmt.order_by(WORKLOADS.c.node, WORKLOADS.c.name).limit(query.limit + 1)
    with engine.connect() as conn:
        rows = conn.execute(stmt).all()
    items = [WorkloadInfo.model_validate(dict(r._mapping)) for r in rows[: query.limit]]
    if items:  # each workload's view is as old as its node's last word
        names = sorted({w.node for w in items})
        cols = (NODES.c.node, NODES.c.state, NODES.c.last_seen)
        with engine.connect() as conn:
            found = conn.execute(select(*cols).where(NODES.c.node.in_(names))).all()
        heard = {r[0]: (r[1], r[2]) for r in found}
        for w in items:
            if w.node in heard:
                w.as_of = heard[w.node][1]
                w.age_s = _age(*heard[w.node])
    cursor = None
    if len(rows) > query.limit:
        cursor = encode_cursor("workloads", [items[-1].node, items[-1].name])
    return items, cursor


def list_events(engine: Engine, tenant: str, query: ListEvents) -> tuple[list[Event], str | None]:
    """A page of fleet events and ``tenant``'s own, in the order they were received."""
    stmt = select(EVENTS).where(or_(EVENTS.c.tenant.is_(None), EVENTS.c.tenant == tenant))
    if query.since is not None:
        stmt = stmt.where(EVENTS.c.ts >= query.since)
    if query.kind is not None:
        stmt = stmt.where(EVENTS.c.kind == query.kind)
    if query.node is not None:
        stmt = stmt.where(EVENTS.c.node == query.node)
    if query.app is not None:
        stmt = stmt.where(EVENTS.c.app == query.app)
    if query.cursor:
        stmt = stmt.where(EVENTS.c.seq > decode_cursor("events", query.cursor, (int,))[0])
    stmt = stmt.order_by(EVENTS.c.seq).limit(query.limit + 1)
    with engine.connect() as conn:
        rows = conn.execute(stmt).all()
    events = []
    last_seq = 0
    for row in rows[: query.limit]:
        m = dict(row._mapping)
        last_seq = m.pop("seq")
        m.pop("received_at", None)
        events.append(Event.model_validate(m))
    cursor = encode_cursor("events", [last_seq]) if len(rows) > query.limit else None
    return events, cursor


def list_apps(
    engine: Engine, tenant: str, query: ListRegistryApps
) -> tuple[list[RegistryAppInfo], str | None]:
    """A page of ``tenant``'s apps (without manifests), ordered by name."""
    stmt = select(APPS).where(APPS.c.tenant == tenant)
    if query.cursor:
        stmt = stmt.where(APPS.c.name > decode_cursor("apps", query.cursor, (str,))[0])
    stmt = stmt.order_by(APPS.c.name).limit(query.limit + 1)
    with engine.connect() as conn:
        rows = conn.execute(stmt).all()
    apps = [
        RegistryAppInfo.model_validate({**r._mapping, "manifest": {}}) for r in rows[: query.limit]
    ]
    cursor = encode_cursor("apps", [apps[-1].name]) if len(rows) > query.limit else None
    return apps, cursor


def get_app(engine: Engine, tenant: str, name: str) -> RegistryAppInfo | None:
    """One of ``tenant``'s apps with its manifest."""
    with engine.connect() as conn:
        row = conn.execute(select(APPS).where(APPS.c.tenant == tenant, APPS.c.name == name)).first()
    return None if row is None else RegistryAppInfo.model_validate(dict(row._mapping))
