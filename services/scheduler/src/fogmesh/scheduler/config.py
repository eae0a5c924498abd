"""The scheduler's settings: broker, state dir, timings and per-tenant quotas (YAML file)."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field

from fogmesh.protocol.manifest import Cpu, Memory

__all__ = ["Quota", "SchedulerConfig"]


class Quota(BaseModel):
    """Limits on one tenant's apps (None: no limit). Retiring old versions are not counted."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_apps: int | None = Field(default=None, ge=0)
    max_workloads: int | None = Field(default=None, ge=0)
    max_cpu: Cpu | None = Field(default=None, description="sum of CPU requests, cores")
    max_memory: Memory | None = Field(default=None, description="sum of memory requests")


class SchedulerConfig(BaseModel):
    """Everything the scheduler needs to run."""

    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    client_id: str = "scheduler"
    username: str | None = None
    password: str | None = None
    state_dir: Path = Path("/var/lib/fogmesh/scheduler")
    lease_ttl_s: float = Field(default=10.0, gt=0)
    lease_settle_s: float = Field(default=0.5, ge=0)
    tick_s: float = Field(default=1.0, gt=0, description="node check / retry / retire period")
    heartbeat_interval_s: float = Field(default=5.0, gt=0, description="assumed until one comes")
    stale_after: float = Field(default=2.0, gt=0, description="missed heartbeats -> stale")
    offline_after: float = Field(default=3.0, gt=0, description="missed heartbeats (K) -> lost")
    retire_timeout_s: float = Field(default=60.0, ge=0, description="old version kept at most")
    default_quota: Quota = Quota()
    quotas: dict[str, Quota] = Field(default_factory=dict)

    def quota(self, tenant: str) -> Quota:
        """The tenant's quota, else the default."""
        return self.quotas.get(tenant, self.default_quota)

    @classmethod
    def from_file(cls, path: Path, **overrides: object) -> SchedulerConfig:
        """Load YAML (or JSON) settings; ``overrides`` that are not None win."""
        data = yaml.safe_load(path.read_text()) or {}
        if not isinstance(data, dict):
            raise TypeError(f"{path}: settings must be a mapping")
        data.update({k: v for k, v in overrides.items() if v is not None})
        return cls.model_validate(data)
