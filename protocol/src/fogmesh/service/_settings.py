"""Settings every fogmesh service shares: the broker block, the client id, and loading them
from a YAML file with command-line overrides on top."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Self

from pydantic import ConfigDict, Field, model_validator

from fogmesh.bus import BusConfig
from fogmesh.protocol._model import Model
from fogmesh.service._broker import BrokerSettings

__all__ = ["LeaderSettings", "ServiceSettings"]


class ServiceSettings(Model):
    """A service's broker and client id; subclasses add their own keys (and set ``client_id``'s
    default and ``role``, the name the client-id error speaks of)."""

    model_config = ConfigDict(extra="forbid")

    role: ClassVar[str] = "service"

    broker: BrokerSettings = Field(default_factory=BrokerSettings)
    client_id: str = Field(default="service", description="MQTT client id")

    @model_validator(mode="after")
    def _one_client_id(self) -> Self:
        # One id, the service's own: the broker block's would silently disagree with it.
        if self.broker.client_id not in (None, self.client_id):
            raise ValueError(f"set the {self.role}'s client_id, not broker.client_id")
        return self

    def bus_config(self) -> BusConfig:
        """The bus settings: the broker block under this service's client id."""
        return self.broker.bus_config(self.client_id)

    @classmethod
    def from_file(cls, path: Path, **overrides: object) -> Self:
        """Load YAML (or JSON) settings; ``overrides`` that are not None win."""
        import yaml  # only a service started with a settings file needs it (docs/agent.md)

        data = yaml.safe_load(path.read_text()) or {}
        if not isinstance(data, dict):
            raise TypeError(f"{path}: settings must be a mapping")
        return cls.merged(data, **overrides)

    @classmethod
    def merged(cls, data: dict[str, Any], **overrides: Any) -> Self:
        """``data`` with ``overrides`` that are not None on top; ``broker`` overrides merge
        key by key into the file's broker block."""
        data = dict(cls._normalised(data))
        for key, value in overrides.items():
            if value is None:
                continue
            if key == "broker" and isinstance(value, dict):
                data[key] = {**data.get("broker", {}), **value}
            else:
                data[key] = value
        return cls.model_validate(data)

    @classmethod
    def _normalised(cls, data: dict[str, Any]) -> dict[str, Any]:
        """The file's data before overrides are merged in (a subclass may lift old keys)."""
        return data


class LeaderSettings(ServiceSettings):
    """A service that does its duty only while it holds that duty's lease
    (:class:`fogmesh.service.LeaderDuty`)."""

    lease_ttl_s: float = Field(default=10.0, gt=0)
    lease_settle_s: float = Field(default=0.5, ge=0)
