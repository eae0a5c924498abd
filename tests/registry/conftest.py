"""Fixtures of the registry's tests: databases (SQLite always, PostgreSQL when available)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import SQLModel

from fogmesh.registry.db import make_engine
from fogmesh.registry.db.schema import TABLE_MODELS
from tests.registry.support import pg_url_or_skip


def fresh_pg_url() -> str:
    """The test PostgreSQL URL, with every registry table dropped first."""
    url = pg_url_or_skip()
    engine = make_engine(url)
    assert TABLE_MODELS
    SQLModel.metadata.drop_all(engine)
    engine.dispose()
    return url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database URL for an empty registry: a SQLite file, or the test PostgreSQL."""
    if request.param == "postgres":
        return fresh_pg_url()
    return f"sqlite:///{tmp_path}/registry.db"


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A SQLite file for the registry."""
    return f"sqlite:///{tmp_path}/registry.db"


@pytest.fixture
def pg_url() -> str:
    """The test PostgreSQL, emptied."""
    return fresh_pg_url()


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """An engine on ``db_url``, disposed after the test."""
    eng = make_engine(db_url)
    yield eng
    eng.dispose()
