"""The migrator's settings: broker, lease, triggers and the rules against flapping (YAML)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from fogmesh.service import BrokerSettings

__all__ = ["MigratorConfig"]


class MigratorConfig(BaseModel):
    """Everything the migrator needs to run (docs/migrator.md lists every key)."""

    model_config = ConfigDict(extra="forbid")

    broker: BrokerSettings = Field(default_factory=BrokerSettings)
    client_id: str = Field(default="migrator", description="MQTT client id and lease holder")
    lease_ttl_s: float = Field(default=10.0, gt=0)
    lease_settle_s: float = Field(default=0.5, ge=0)
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
    failed_node_avoid_s: float = Field(
        default=300.0, ge=0, description="never move onto a node lost this recently"
    )

    @model_validator(mode="after")
    def _one_client_id(self) -> MigratorConfig:
        if self.broker.client_id not in (None, self.client_id):
            raise ValueError("set the migrator's client_id, not broker.client_id")
        return self

    @classmethod
    def from_file(cls, path: Path, **overrides: object) -> MigratorConfig:
        """Load YAML (or JSON) settings; ``overrides`` that are not None win."""
        data = yaml.safe_load(path.read_text()) or {}
        if not isinstance(data, dict):
            raise TypeError(f"{path}: settings must be a mapping")
        return cls.merged(data, **overrides)

    @classmethod
    def merged(cls, data: dict[str, Any], **overrides: Any) -> MigratorConfig:
        """``data`` with ``overrides`` that are not None on top; ``broker`` overrides merge
        key by key into the file's broker block."""
        data = dict(data)
        for key, value in overrides.items():
            if value is None:
                continue
            if key == "broker" and isinstance(value, dict):
                data[key] = {**data.get("broker", {}), **value}
            else:
                data[key] = value
        return cls.model_validate(data)
