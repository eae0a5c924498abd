"""Fixtures of the registry's tests: databases (SQLite always, PostgreSQL when available)."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, make_url, text
from sqlmodel import SQLModel

from fogmesh.registry.db import make_engine
from fogmesh.registry.db.schema import TABLE_MODELS
from tests.registry.support import pg_url_or_skip


@pytest.fixture(scope="session")
def pg_session_url() -> Iterator[str]:
    """The test PostgreSQL, in a schema of this session's own (dropped at its end).

    Each pytest-xdist worker, and each concurrent run on the machine, gets its own schema,
    named in the URL's ``search_path``: their DDL and ``drop_all`` never meet.
    """
    base = pg_url_or_skip()
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    schema = f"fmt_{worker}_{secrets.token_hex(4)}"
    admin = make_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


def fresh_pg_url(url: str) -> str:
    """``url`` (the session's schema), with every registry table dropped first."""
    engine = make_engine(url)
    assert TABLE_MODELS
    SQLModel.metadata.drop_all(engine)
    engine.dispose()
    return url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database URL for an empty registry: a SQLite file, or the test PostgreSQL."""
    if request.param == "postgres":
        return fresh_pg_url(request.getfixturevalue("pg_session_url"))
    return f"sqlite:///{tmp_path}/registry.db"


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A SQLite file for the registry."""
    return f"sqlite:///{tmp_path}/registry.db"


@pytest.fixture
def pg_url(pg_session_url: str) -> str:
    """The test PostgreSQL, emptied."""
    return fresh_pg_url(pg_session_url)


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """An engine on ``db_url``, disposed after the test."""
    eng = make_engine(db_url)
    yield eng
    eng.dispose()
