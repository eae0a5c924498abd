"""Open the registry's database: SQLite (WAL) by default, PostgreSQL by URL."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, event, text
from sqlmodel import create_engine

__all__ = ["ddl_lock", "make_engine", "normalise_url"]

_WAL_WAIT_S = 30.0


def normalise_url(url: str) -> str:
    """Accept plain ``postgresql://`` URLs and pick the psycopg 3 driver for them."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite files get WAL, ``synchronous=NORMAL`` and a busy timeout.

    A relative SQLite path's directory is created if missing.
    """
    url = normalise_url(url)
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1] if "///" in url else ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_size=4, max_overflow=4, pool_pre_ping=True)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA busy_timeout=30000")
        if cursor.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            _to_wal(cursor)
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()


def _to_wal(cursor: Any) -> None:
    """Switch a fresh file to WAL (it stays so). The switch needs the file to itself and does
    not wait on the busy timeout: another registry opening the same fresh file at the same
    moment made it fail with "database is locked", so it is tried again for up to 30 s."""
    deadline = time.monotonic() + _WAL_WAIT_S
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
        else:
            return


def ddl_lock(conn: Connection, key: int) -> None:
    """Hold the schema changes of ``conn``'s transaction apart from every other registry's:
    replicas starting together on a fresh database create the tables once, the others wait.

    PostgreSQL: the transaction's advisory lock ``key`` (two concurrent ``CREATE TABLE`` s fail
    with a unique violation in ``pg_type``). SQLite: the database's write lock, taken first
    (``BEGIN IMMEDIATE``, waiting up to the busy timeout); the driver opens no transaction
    before DDL, so each ``CREATE TABLE`` of two registries checked for the table, found none,
    and one failed with "table already exists". Call it first in the transaction."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
    elif conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")
