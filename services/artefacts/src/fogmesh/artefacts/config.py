"""The settings of the artefact store (cloud) and of a site's cache (YAML; docs/artefacts.md)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import ClassVar

from pydantic import Field

from fogmesh.bus import BusConfig
from fogmesh.protocol import Ident
from fogmesh.protocol.artefacts import cache_duty
from fogmesh.service import ServiceSettings

__all__ = ["CacheConfig", "StoreConfig"]


class StoreConfig(ServiceSettings):
    """The store: where blobs live and what each tenant may keep."""

    role: ClassVar[str] = "artefact store"

    client_id: str = Field(default="artefacts", description="MQTT client id")
    data_dir: Path = Field(default=Path("/var/lib/fogmesh/artefacts"))
    quota_bytes: int = Field(default=1 << 30, ge=0, description="each tenant's default quota")
    quotas: dict[Ident, int] = Field(default_factory=dict, description="per-tenant quotas")
    upload_ttl_s: float = Field(
        default=7 * 86400.0, gt=0, description="an upload idle this long is dropped"
    )
    sweep_s: float = Field(default=3600.0, gt=0, description="how often idle uploads are swept")

    def quota(self, tenant: str) -> int:
        """The quota of ``tenant`` in bytes."""
        return self.quotas.get(tenant, self.quota_bytes)


class CacheConfig(ServiceSettings):
    """A site's cache: on the site broker's host, serving that site's nodes."""

    role: ClassVar[str] = "artefact cache"

    client_id: str = Field(default="artefact-cache", description="MQTT client id")
    site: Ident = Field(description="the site it serves (a node's `site`)")
    data_dir: Path = Field(default=Path("/var/lib/fogmesh/artefact-cache"))
    http_host: str = Field(default="0.0.0.0", description="where nodes download from")  # noqa: S104
    http_port: int = Field(default=7480, ge=0, le=65535, description="0: any free port")
    advertise_host: str = Field(default="", description="the host nodes reach (default: http_host)")
    max_bytes: int = Field(
        default=20 << 30, gt=0, description="the cache's size; least recently used goes first"
    )
    request_timeout_s: float = Field(default=30.0, gt=0, description="one request to the store")
    desired_wait_s: float = Field(
        default=10.0, gt=0, description="how long a fetch waits for the node's desired state"
    )
    pull_window: int = Field(default=8, ge=1, le=64, description="chunk reads in flight")
    ticket_ttl_s: float = Field(default=600.0, gt=0, description="how long a download URL works")

    def bus_config(self) -> BusConfig:
        """The bus settings, naming the cache's duty (``cache-{site}``) for replies: what it
        asks the store is answered on ``fm/v1/ops/cache-{site}/reply/{client}``, which the WAN
        links carry down to this site only (``fm/v1/reply/#`` crosses to every site)."""
        return dataclasses.replace(super().bus_config(), reply_duty=cache_duty(self.site))
