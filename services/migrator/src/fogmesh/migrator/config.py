"""The migrator's settings: broker, lease, triggers and the rules against flapping (YAML)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from fogmesh.protocol import Ident
from fogmesh.service import LeaderSettings

__all__ = ["MigratorConfig"]


class MigratorConfig(LeaderSettings):
    """Everything the migrator needs to run (docs/migrator.md lists every key; broker,
    client_id and lease timings: :class:`fogmesh.service.LeaderSettings`)."""

    role: ClassVar[str] = "migrator"

    client_id: str = Field(default="migrator", description="MQTT client id and lease holder")
    site: Ident | None = Field(
        default=None,
        description="site mode: this migrator runs on that site's broker and only writes its "
        "nodes' desired state while the site's links are down (lease migrator-{site})",
    )
    tick_s: float = Field(default=1.0, gt=0, description="how often the triggers are judged")
    request_timeout_s: float = Field(default=10.0, gt=0, description="one request's wait")
    chunk_bytes: int = Field(default=256 * 1024, gt=0, le=256 * 1024)
    # overload: above `overload_*_percent` for `overload_window_s`; cleared below `clear_*`
    overload_cpu_percent: float = Field(default=90.0, gt=0, le=100)
    overload_memory_percent: float = Field(default=90.0, gt=0, le=100)
    overload_clear_percent: float = Field(
        default=75.0, gt=0, le=100, description="hysteresis: a node is calm again below this"
    )
    overload_window_s: float = Field(default=30.0, ge=0)
    # no flapping
    cooldown_s: float = Field(default=120.0, ge=0, description="between two moves of a workload")
    node_budget: int = Field(default=3, ge=1, description="moves off one node per window")
    node_budget_window_s: float = Field(default=300.0, gt=0)
    # state replication for unplanned moves (migration: stateful)
    replica_interval_s: float = Field(
        default=5.0, gt=0, description="how often a stateful workload's state is copied"
    )
    replica_peers: int = Field(default=2, ge=1, description="peers holding each replica")
    failed_node_avoid_s: float = Field(
        default=300.0, ge=0, description="never move onto a node lost this recently"
    )
