"""PostgreSQL: a join storm's writes as one statement per kind, the rows as arrays.

New nodes, liveness changes, facts and events were ``executemany`` through psycopg's pipeline:
Python work per row and statement (SQLAlchemy's parameters, psycopg's dumping), which on the
2-core machine, with the registry given a fraction of a core, kept one 2,000-node batch busy
for seconds and the join of 10,000 nodes past three minutes. Here each kind is one statement
over the rows as one JSON parameter (``json_to_recordset``; as
:mod:`~fogmesh.registry.db.heartbeats` does for heartbeats): the Python side is one
``json.dumps``, the parsing is PostgreSQL's. (``unnest`` of one array per column was tried
first: psycopg quotes each element of a text array in Python, which cost as much as before.)
Rows are coalesced per node before they get here (one per node and kind).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Connection

__all__ = [
    "Column",
    "cast_float",
    "cast_text",
    "insert_events",
    "insert_nodes",
    "recordset",
    "rows_param",
    "update_hellos",
    "update_liveness",
]

Column = tuple[str, str, Callable[[Any], Any]]
"""A column: its name, its PostgreSQL type, how a value becomes the array's element."""


def cast_text(value: Any) -> Any:
    """A text column's value."""
    return None if value is None else str(value)


def cast_float(value: Any) -> Any:
    """A number as JSON has it; NaN and the infinities as the text PostgreSQL reads them from."""
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else str(number).replace("inf", "Infinity")


def _json(value: Any) -> Any:
    return value  # nested as it is: the record's column is json


_NODE_COLUMNS: tuple[Column, ...] = (
    ("node", "text", cast_text),
    ("state", "text", cast_text),
    ("labels", "json", _json),
    ("boot_id", "text", cast_text),
    ("first_seen", "float8", cast_float),
    ("last_seen", "float8", cast_float),
    ("state_since", "float8", cast_float),
    ("offline_reason", "text", cast_text),
)
_LIVENESS_COLUMNS: tuple[Column, ...] = (
    ("l_node", "text", cast_text),
    ("l_state", "text", cast_text),
    ("l_at", "float8", cast_float),
    ("l_reason", "text", cast_text),
    ("l_boot", "text", cast_text),
    ("l_seen", "float8", cast_float),
)
_HELLO_COLUMNS: tuple[Column, ...] = (
    ("h_node", "text", cast_text),
    ("h_facts", "json", _json),
    ("h_arch", "text", cast_text),
    ("h_labels", "json", _json),
    ("h_lat", "float8", cast_float),
    ("h_lon", "float8", cast_float),
    ("h_boot", "text", cast_text),
)
_EVENT_COLUMNS: tuple[Column, ...] = (
    ("id", "text", cast_text),
    ("kind", "text", cast_text),
    ("tenant", "text", cast_text),
    ("node", "text", cast_text),
    ("app", "text", cast_text),
    ("workload", "text", cast_text),
    ("ts", "float8", cast_float),
    ("source", "text", cast_text),
    ("message", "text", cast_text),
    ("data", "json", _json),
    ("received_at", "float8", cast_float),
)


def recordset(columns: Sequence[Column], *, alias: str = "v") -> str:
    """``json_to_recordset`` of the one parameter ``rows``, typed by ``columns``."""
    typed = ", ".join(f"{name} {kind}" for name, kind, _ in columns)
    return f"json_to_recordset(%(rows)s::json) AS {alias}({typed})"


def rows_param(columns: Sequence[Column], rows: Sequence[dict[str, Any]]) -> dict[str, str]:
    """The ``rows`` parameter of :func:`recordset`: one JSON text (``json.dumps`` runs in C)."""
    records = [{name: cast(row.get(name)) for name, _, cast in columns} for row in rows]
    return {"rows": json.dumps(records, separators=(",", ":"))}


def _names(columns: Sequence[Column]) -> str:
    return ", ".join(name for name, _, _ in columns)


# Built from this module's constant column names: no outside text reaches the SQL (S608).
_INSERT_NODES = (
    f"INSERT INTO nodes ({_names(_NODE_COLUMNS)}) SELECT * FROM {recordset(_NODE_COLUMNS)}"  # noqa: S608
    " ON CONFLICT (node) DO NOTHING RETURNING node"
)
_UPDATE_LIVENESS = (
    "UPDATE nodes SET state = v.l_state, state_since = v.l_at, offline_reason = v.l_reason,"  # noqa: S608
    " boot_id = COALESCE(v.l_boot, nodes.boot_id), last_seen = COALESCE(v.l_seen, nodes.last_seen)"
    f" FROM {recordset(_LIVENESS_COLUMNS)} WHERE nodes.node = v.l_node"
)
_UPDATE_HELLOS = (
    "UPDATE nodes SET facts = v.h_facts, arch = v.h_arch, labels = v.h_labels, lat = v.h_lat,"  # noqa: S608
    f" lon = v.h_lon, boot_id = v.h_boot FROM {recordset(_HELLO_COLUMNS)}"
    " WHERE nodes.node = v.h_node"
)
_INSERT_EVENTS = (
    f"INSERT INTO events ({_names(_EVENT_COLUMNS)}) SELECT * FROM {recordset(_EVENT_COLUMNS)}"  # noqa: S608
    " ON CONFLICT (id) DO NOTHING"
)


def insert_nodes(conn: Connection, rows: Sequence[dict[str, Any]]) -> set[str]:
    """Create the nodes of ``rows`` (``_node_row`` dicts) that do not exist yet; return those
    this statement created (a concurrent transaction's insert of the same node waits for it
    to end and then creates nothing)."""
    if not rows:
        return set()
    result = conn.exec_driver_sql(_INSERT_NODES, rows_param(_NODE_COLUMNS, rows))
    return {str(node) for (node,) in result}


def update_liveness(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Liveness changes (``_liveness_params`` dicts; no ``l_boot`` / ``l_seen``: kept)."""
    if rows:
        conn.exec_driver_sql(_UPDATE_LIVENESS, rows_param(_LIVENESS_COLUMNS, rows))


def update_hellos(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Facts from hellos (``_hello_params`` dicts)."""
    if rows:
        conn.exec_driver_sql(_UPDATE_HELLOS, rows_param(_HELLO_COLUMNS, rows))


def insert_events(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Events (``event_row`` dicts); one whose id is stored already is skipped."""
    if rows:
        conn.exec_driver_sql(_INSERT_EVENTS, rows_param(_EVENT_COLUMNS, rows))
