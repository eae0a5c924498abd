"""The scheduler's settings: broker, state dir, timings and per-tenant quotas (YAML file).

The broker is a ``broker:`` block (:class:`fogmesh.service.BrokerSettings`); the flat keys
``host``, ``port``, ``username`` and ``password`` of older files still fill it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from fogmesh.protocol import Ident
from fogmesh.protocol.manifest import Cpu, Memory
from fogmesh.service import BrokerSettings, LeaderSettings

__all__ = ["Quota", "SchedulerConfig"]


class Quota(BaseModel):
    """Limits on one tenant's apps (None: no limit). Retiring old versions are not counted."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_apps: int | None = Field(default=None, ge=0)
    max_workloads: int | None = Field(default=None, ge=0)
    max_cpu: Cpu | None = Field(default=None, description="sum of CPU requests, cores")
    max_memory: Memory | None = Field(default=None, description="sum of memory requests")


_FLAT_BROKER_KEYS = frozenset({"host", "port", "username", "password"})


def _lift_broker_keys(data: Any) -> Any:
    """Older files (and ``fogmesh up``'s) name the broker at the top level: move those keys
    into the ``broker`` block (the block's own keys win)."""
    if not isinstance(data, dict) or not _FLAT_BROKER_KEYS & data.keys():
        return data
    data = dict(data)
    broker = data.get("broker", {})
    if isinstance(broker, BrokerSettings):
        broker = broker.model_dump(exclude_unset=True)
    if not isinstance(broker, dict):
        return data  # let validation say what is wrong
    flat = {k: data.pop(k) for k in _FLAT_BROKER_KEYS & data.keys()}
    data["broker"] = {**flat, **broker}
    return data


class SchedulerConfig(LeaderSettings):
    """Everything the scheduler needs to run (broker, client_id and lease timings:
    :class:`fogmesh.service.LeaderSettings`)."""

    role: ClassVar[str] = "scheduler"

    client_id: str = Field(default="scheduler", description="MQTT client id and lease holder")
    state_dir: Path = Path("/var/lib/fogmesh/scheduler")
    artefact_url_tenants: list[Ident] = Field(
        default_factory=list,
        description="tenants whose manifests may fetch artefacts by URL (the operator's own); "
        "every other tenant names refs to the artefact store only (docs/artefacts.md)",
    )
    artefact_check_timeout_s: float = Field(
        default=3.0,
        ge=0,
        description="how long a deploy waits for the artefact store to confirm each ref the "
        "tenant names (no answer: accepted with a warning); 0 turns the check off",
    )
    tick_s: float = Field(default=1.0, gt=0, description="node check / retry / retire period")
    heartbeat_interval_s: float = Field(default=5.0, gt=0, description="assumed until one comes")
    stale_after: float = Field(default=2.0, gt=0, description="missed heartbeats -> stale")
    offline_after: float = Field(default=3.0, gt=0, description="missed heartbeats (K) -> lost")
    retire_timeout_s: float = Field(default=60.0, ge=0, description="old version kept at most")
    not_running_alarm_s: float = Field(
        default=120.0, gt=0, description="placed but not reported running this long: an alarm"
    )
    default_quota: Quota = Quota()
    quotas: dict[str, Quota] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _flat_broker_keys(cls, data: Any) -> Any:
        return _lift_broker_keys(data)

    def quota(self, tenant: str) -> Quota:
        """The tenant's quota, else the default."""
        return self.quotas.get(tenant, self.default_quota)

    @classmethod
    def _normalised(cls, data: dict[str, Any]) -> dict[str, Any]:
        lifted: dict[str, Any] = _lift_broker_keys(data)
        return lifted
