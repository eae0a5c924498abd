"""Create the schema at start, and upgrade an older one additively.

Each start: create missing tables, then add every column the models have and the database
lacks (``ALTER TABLE ... ADD COLUMN``, nullable or with a default), then record
:data:`SCHEMA_VERSION` in ``schema_version``. A database newer than this code is refused.
"""

from __future__ import annotations

import time

from sqlalchemy import Column, Connection, Engine, inspect, text
from sqlalchemy.schema import CreateColumn
from sqlmodel import SQLModel

from fogmesh.protocol.errors import FogmeshError
from fogmesh.registry.db import schema
from fogmesh.registry.db.engine import ddl_lock
from fogmesh.registry.db.schema import SCHEMA_VERSION

__all__ = ["SchemaTooNew", "migrate"]


_MIGRATE_LOCK = 0x666D_7265_6769  # "fmregi": the advisory lock the registries migrate under


class SchemaTooNew(FogmeshError, RuntimeError):
    """The database was written by a newer registry."""


def migrate(engine: Engine) -> list[str]:
    """Bring the database to :data:`SCHEMA_VERSION`; return the columns that were added."""
    assert schema.TABLE_MODELS  # the models must be imported for their tables to exist
    added: list[str] = []
    with engine.begin() as conn:
        ddl_lock(conn, _MIGRATE_LOCK)  # replicas starting together: one creates, the others wait
        SQLModel.metadata.create_all(conn)
        current = conn.execute(text("SELECT version FROM schema_version WHERE id = 1")).scalar()
        if current is not None and int(current) > SCHEMA_VERSION:
            raise SchemaTooNew(
                f"database schema {current} is newer than this registry ({SCHEMA_VERSION})"
            )
        added = _add_missing_columns(conn)
        now = time.time()
        if current is None:
            conn.execute(
                text("INSERT INTO schema_version (id, version, upgraded_at) VALUES (1, :v, :t)"),
                {"v": SCHEMA_VERSION, "t": now},
            )
        elif int(current) < SCHEMA_VERSION or added:
            conn.execute(
                text("UPDATE schema_version SET version = :v, upgraded_at = :t WHERE id = 1"),
                {"v": SCHEMA_VERSION, "t": now},
            )
    return added


def _add_missing_columns(conn: Connection) -> list[str]:
    inspector = inspect(conn)
    added: list[str] = []
    for table in SQLModel.metadata.sorted_tables:
        have = {c["name"] for c in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name in have:
                continue
            ddl = _column_ddl(conn, column, _model_default(table.name, column.name))
            conn.execute(text(f"ALTER TABLE {table.name} ADD COLUMN {ddl}"))
            added.append(f"{table.name}.{column.name}")
    return added


def _model_default(table: str, column: str) -> object:
    """The pydantic default of the model field behind ``table.column`` (None if none)."""
    for model in schema.TABLE_MODELS:
        if model.__tablename__ == table:
            field = model.model_fields.get(column)
            if field is not None and not field.is_required():
                return field.get_default(call_default_factory=True)
    return None


def _column_ddl(conn: Connection, column: Column[object], arg: object) -> str:
    """The column's DDL, made nullable unless it has a scalar default to fill old rows with."""
    spec = str(CreateColumn(column).compile(dialect=conn.dialect))
    if isinstance(arg, bool | int | float | str) and not column.primary_key:
        literal = repr(arg) if not isinstance(arg, str) else "'" + arg.replace("'", "''") + "'"
        if isinstance(arg, bool):
            literal = "1" if arg else "0"
        return f"{spec} DEFAULT {literal}"
    return spec.replace(" NOT NULL", "")
