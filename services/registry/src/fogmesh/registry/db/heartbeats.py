"""Write a batch's heartbeats as a few whole-batch statements, not one statement per row.

Each heartbeat touches three rows (the node's ``last_seen`` / ``last_seq``, its latest usage
and one slot of its usage ring). Written as ``executemany`` of compiled statements, a batch
cost a row's worth of Python parameter handling per row and statement, and the driver gave up
and took back the GIL around every row (sqlite3 around each step, psycopg around each
pipeline wait). With the event loop busy receiving, each take-back waits up to the
interpreter's switch interval (5 ms): a 1,500-heartbeat batch took 0.46 s alone and 1.4 s
beside a busy event loop on PostgreSQL, and the registry fell behind its fleet.

So the rows travel as one parameter set per statement:

* PostgreSQL: one statement for all three tables, the rows as one JSON parameter
  (``json_to_recordset``, see :mod:`~fogmesh.registry.db.join_pg`) feeding data-modifying
  CTEs: one round trip per batch;
* SQLite: per chunk of :data:`SQLITE_CHUNK` rows, three statements over a ``VALUES`` list
  (SQLite 3.33 or newer for ``UPDATE ... FROM``): one step each.

Heartbeats are coalesced per node before they get here (:class:`~fogmesh.registry.ops.Batch`),
so no statement names a node twice (an ``ON CONFLICT DO UPDATE`` must not).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache, lru_cache
from typing import Any

from sqlalchemy import Connection

from fogmesh.registry.db import join_pg
from fogmesh.registry.ops import HeartbeatOp

__all__ = ["SQLITE_CHUNK", "USAGE_KEYS", "write_heartbeats"]

USAGE_KEYS = (
    "cpu_percent",
    "memory_used_bytes",
    "memory_total_bytes",
    "disk_used_bytes",
    "disk_total_bytes",
    "load1",
)
"""The usage columns of ``node_usage`` and ``usage_history``, in the order rows carry them."""

SQLITE_CHUNK = 2000
"""Rows per SQLite statement (a default batch): 11 parameters each, 22,000 of SQLite's 32,766."""

_COLUMNS = ("node", "at", "interval_s", "seq", "ts", *USAGE_KEYS)
_PG_TYPES: tuple[str, ...] = ("text", "float8", "float8", "int8", "float8", "float8")
_PG_TYPES += ("int8", "int8", "int8", "int8", "float8")
_USAGE_COLS = ", ".join(("ts", "seq", *USAGE_KEYS))
_USAGE_SET = ", ".join(f"{c} = excluded.{c}" for c in ("ts", "seq", *USAGE_KEYS))
_NODE_SET = (
    "last_seen = v.at, heartbeat_interval_s = v.interval_s, last_seq = v.seq, heartbeat_ts = v.ts"
)


def write_heartbeats(conn: Connection, beats: Sequence[HeartbeatOp], *, history_size: int) -> None:
    """Store ``beats`` (at most one per node) in the open transaction of ``conn``."""
    if not beats:
        return
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(_postgres_sql(history_size), _postgres_rows(beats))
        return
    if conn.dialect.name != "sqlite":
        raise NotImplementedError(f"no heartbeat writer for the {conn.dialect.name} dialect")
    for i in range(0, len(beats), SQLITE_CHUNK):
        chunk = beats[i : i + SQLITE_CHUNK]
        params = tuple(v for b in chunk for v in _row(b))
        for sql in _sqlite_sql(len(chunk), history_size):
            conn.exec_driver_sql(sql, params)


def _row(b: HeartbeatOp) -> tuple[Any, ...]:
    usage = b.usage
    return (b.node, b.at, b.interval_s, b.seq, b.ts, *(usage[k] for k in USAGE_KEYS))


def _int(value: Any) -> Any:
    return None if value is None else int(value)


_PG_CAST = {"text": join_pg.cast_text, "float8": join_pg.cast_float, "int8": _int}
_PG_COLUMNS: tuple[join_pg.Column, ...] = tuple(
    (name, kind, _PG_CAST[kind]) for name, kind in zip(_COLUMNS, _PG_TYPES, strict=True)
)


def _postgres_rows(beats: Sequence[HeartbeatOp]) -> dict[str, str]:
    rows = [dict(zip(_COLUMNS, _row(b), strict=True)) for b in beats]
    return join_pg.rows_param(_PG_COLUMNS, rows)


@cache
def _postgres_sql(history_size: int) -> str:
    # built from this module's constant column names and an int: no outside text (S608)
    return (
        f"WITH v AS (SELECT * FROM {join_pg.recordset(_PG_COLUMNS)}),"  # noqa: S608
        f" node_rows AS (UPDATE nodes SET {_NODE_SET} FROM v WHERE nodes.node = v.node),"
        f" latest AS (INSERT INTO node_usage (node, {_USAGE_COLS})"
        f" SELECT node, {_USAGE_COLS} FROM v"
        f" ON CONFLICT (node) DO UPDATE SET {_USAGE_SET})"
        f" INSERT INTO usage_history (node, slot, {_USAGE_COLS})"
        f" SELECT node, mod(seq, {int(history_size)})::int, {_USAGE_COLS} FROM v"
        f" ON CONFLICT (node, slot) DO UPDATE SET {_USAGE_SET}"
    )


@lru_cache(maxsize=8)
def _sqlite_sql(rows: int, history_size: int) -> tuple[str, str, str]:
    group = "(" + ", ".join(["?"] * len(_COLUMNS)) + ")"
    values = ", ".join([group] * rows)
    cte = f"WITH v({', '.join(_COLUMNS)}) AS (VALUES {values})"
    # (S608: as above) WHERE true: SQLite's parser needs it between a SELECT and its ON CONFLICT
    return (
        f"{cte} UPDATE nodes SET {_NODE_SET} FROM v WHERE nodes.node = v.node",  # noqa: S608
        f"{cte} INSERT INTO node_usage (node, {_USAGE_COLS}) SELECT node, {_USAGE_COLS}"  # noqa: S608
        f" FROM v WHERE true ON CONFLICT (node) DO UPDATE SET {_USAGE_SET}",
        f"{cte} INSERT INTO usage_history (node, slot, {_USAGE_COLS})"  # noqa: S608
        f" SELECT node, seq % {int(history_size)}, {_USAGE_COLS} FROM v WHERE true"
        f" ON CONFLICT (node, slot) DO UPDATE SET {_USAGE_SET}",
    )
