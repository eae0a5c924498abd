"""The registry's tables (sqlmodel). Times are unix seconds (float); JSON columns hold dicts.

Byte counts are ``BIGINT`` (a node's memory does not fit in PostgreSQL's 32-bit ``INTEGER``).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Index
from sqlmodel import Field, SQLModel

__all__ = [
    "SCHEMA_VERSION",
    "TABLE_MODELS",
    "AppRow",
    "EventRow",
    "NodeRow",
    "SchemaVersion",
    "TenantRow",
    "UsageHistoryRow",
    "UsageRow",
    "WorkloadRow",
]

SCHEMA_VERSION = 1
"""The schema this code writes; a database with a lower version is upgraded at start."""


def _big(default: int = 0) -> Any:
    return Field(default=default, sa_type=BigInteger)


class SchemaVersion(SQLModel, table=True):
    """One row: the schema version of this database and when it was last upgraded."""

    __tablename__ = "schema_version"

    id: int = Field(default=1, primary_key=True)
    version: int
    upgraded_at: float


class TenantRow(SQLModel, table=True):
    """A tenant, recorded the first time an app, workload or event names it."""

    __tablename__ = "tenants"

    name: str = Field(primary_key=True, max_length=128)
    first_seen: float


class NodeRow(SQLModel, table=True):
    """A node: its facts from hello, its liveness as judged by the registry."""

    __tablename__ = "nodes"

    node: str = Field(primary_key=True, max_length=128)
    state: str = Field(default="online", max_length=16, index=True)
    arch: str | None = Field(default=None, max_length=32, index=True)
    facts: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    labels: dict[str, str] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    lat: float | None = None
    lon: float | None = None
    boot_id: str = Field(default="", max_length=128)
    first_seen: float = 0.0
    last_seen: float = 0.0
    state_since: float = 0.0
    offline_reason: str = Field(default="", max_length=64)
    heartbeat_interval_s: float | None = None
    last_seq: int | None = Field(default=None, sa_type=BigInteger)
    heartbeat_ts: float | None = Field(default=None, description="the last heartbeat's own ts")


class _UsageColumns(SQLModel):
    ts: float
    seq: int = _big()
    cpu_percent: float = 0.0
    memory_used_bytes: int = _big()
    memory_total_bytes: int = _big()
    disk_used_bytes: int = _big()
    disk_total_bytes: int = _big()
    load1: float = 0.0


class UsageRow(_UsageColumns, table=True):
    """The latest usage of each node."""

    __tablename__ = "node_usage"

    node: str = Field(primary_key=True, max_length=128)


class UsageHistoryRow(_UsageColumns, table=True):
    """A short ring of recent usage per node: ``slot`` is ``seq % history_size``."""

    __tablename__ = "usage_history"

    node: str = Field(primary_key=True, max_length=128)
    slot: int = Field(primary_key=True)


class AppRow(SQLModel, table=True):
    """An app as the scheduler announced it (``app-deployed`` / ``app-updated`` events)."""

    __tablename__ = "apps"

    tenant: str = Field(primary_key=True, max_length=128)
    name: str = Field(primary_key=True, max_length=128)
    version: str = Field(default="1", max_length=64)
    manifest: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: float = 0.0
    updated_at: float = 0.0


class WorkloadRow(SQLModel, table=True):
    """A workload on a node, from that node's retained ``actual``."""

    __tablename__ = "workloads"
    __table_args__ = (Index("ix_workloads_tenant_node_name", "tenant", "node", "name"),)

    node: str = Field(primary_key=True, max_length=128)
    name: str = Field(primary_key=True, max_length=128)
    tenant: str = Field(max_length=128)
    app: str = Field(max_length=128)
    component: str = Field(max_length=128)
    runtime: str = Field(default="", max_length=32)
    phase: str = Field(max_length=32)
    reason: str = ""
    restarts: int = 0
    since: float = 0.0
    first_seen: float = 0.0
    updated_at: float = 0.0


class EventRow(SQLModel, table=True):
    """An event seen on ``fm/v1/events/#``; ``seq`` is the order the registry received it."""

    __tablename__ = "events"

    seq: int | None = Field(default=None, primary_key=True)
    id: str = Field(max_length=128, unique=True)
    kind: str = Field(max_length=64, index=True)
    tenant: str | None = Field(default=None, max_length=128, index=True)
    node: str | None = Field(default=None, max_length=128)
    app: str | None = Field(default=None, max_length=128)
    workload: str | None = Field(default=None, max_length=128)
    ts: float = Field(index=True)
    source: str = ""
    message: str = ""
    data: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    received_at: float = 0.0


TABLE_MODELS: tuple[type[SQLModel], ...] = (
    SchemaVersion,
    TenantRow,
    NodeRow,
    UsageRow,
    UsageHistoryRow,
    AppRow,
    WorkloadRow,
    EventRow,
)
"""Every table model, for migrations that need a column's default."""
