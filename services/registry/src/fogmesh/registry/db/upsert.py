"""Dialect-aware ``INSERT ... ON CONFLICT`` for SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Table
from sqlalchemy.dialects import postgresql, sqlite

__all__ = ["insert_ignore", "insert_new", "upsert"]

_SQLITE_PARAMETERS = 32_000
"""Bound parameters per statement of :func:`insert_new` (SQLite allows 32,766)."""


def _insert(conn: Connection, table: Table) -> Any:
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    if conn.dialect.name == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"no upsert for the {conn.dialect.name} dialect")


def upsert(
    conn: Connection,
    table: Table,
    rows: Sequence[dict[str, Any]],
    *,
    keys: Sequence[str],
    update: Sequence[str],
) -> None:
    """Insert ``rows``; where a row with the same ``keys`` exists, set the ``update`` columns."""
    if not rows:
        return
    stmt = _insert(conn, table)
    stmt = stmt.on_conflict_do_update(
        index_elements=list(keys), set_={c: stmt.excluded[c] for c in update}
    )
    conn.execute(stmt, list(rows))


def insert_ignore(
    conn: Connection, table: Table, rows: Sequence[dict[str, Any]], *, keys: Sequence[str]
) -> None:
    """Insert ``rows``, skipping those whose ``keys`` already exist."""
    if not rows:
        return
    stmt = _insert(conn, table).on_conflict_do_nothing(index_elements=list(keys))
    conn.execute(stmt, list(rows))


def insert_new(
    conn: Connection, table: Table, rows: Sequence[dict[str, Any]], *, key: str
) -> set[Any]:
    """Insert ``rows``, skipping those whose ``key`` already exists; return the keys of the rows
    inserted (``RETURNING``: what this transaction created, not what another did first).

    The rows go as multi-row statements of as many rows as the parameter limit allows (a join
    storm stays a statement or two)."""
    if not rows:
        return set()
    stmt = _insert(conn, table).on_conflict_do_nothing(index_elements=[key])
    page = max(1, _SQLITE_PARAMETERS // max(1, len(rows[0])))
    returning = stmt.returning(table.c[key]).execution_options(insertmanyvalues_page_size=page)
    return set(conn.execute(returning, list(rows)).scalars())
