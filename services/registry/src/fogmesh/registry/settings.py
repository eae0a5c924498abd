"""The registry's settings (from the command line, the environment or a test)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from fogmesh.bus import BusConfig

__all__ = ["DEFAULT_DB_URL", "SHARE_BY", "RegistrySettings"]

DEFAULT_DB_URL = "sqlite:///var/fogmesh-registry.db"
SHARE_BY = ("broker", "registry")
"""How replicas split the fleet: the broker's shared subscriptions, or the registries
themselves (:mod:`fogmesh.registry.partition`, for brokers without them, as NATS 2.9)."""
_GROUP = re.compile(r"[A-Za-z0-9_-]{1,64}")


@dataclass(frozen=True, slots=True)
class RegistrySettings:
    """How the registry connects, stores and judges.

    ``missed``: heartbeat intervals of silence after which a node is offline (stale after 1.5).
    ``default_interval``: the interval assumed for a node that has not sent a heartbeat yet.
    ``batch_interval`` / ``batch_max``: the writer commits at least this often / this many.
    ``history_size``: usage samples kept per node.
    ``share``: the shared-subscription group of registry replicas ingesting one fleet into
    one database (:mod:`fogmesh.registry.replicas`); None for a lone registry.
    ``share_by``: who splits the fleet among the group (:data:`SHARE_BY`).
    """

    bus: BusConfig
    db_url: str = DEFAULT_DB_URL
    missed: float = 3.0
    default_interval: float = 10.0
    batch_interval: float = 0.15
    batch_max: int = 2000
    history_size: int = 30
    tick: float | None = None
    share: str | None = None
    share_by: str = "broker"

    def __post_init__(self) -> None:
        if self.missed < 2:
            raise ValueError("missed must be at least 2")
        if self.default_interval <= 0 or self.batch_interval <= 0:
            raise ValueError("intervals must be positive")
        if self.share is not None and not _GROUP.fullmatch(self.share):
            raise ValueError(f"share must be letters, digits, - or _: {self.share!r}")
        if self.share_by not in SHARE_BY:
            raise ValueError(f"share_by must be one of {SHARE_BY}: {self.share_by!r}")

    @property
    def tick_s(self) -> float:
        """How often the liveness judge runs."""
        if self.tick is not None:
            return self.tick
        return min(1.0, max(0.05, self.default_interval / 10))

    @property
    def replica_period_s(self) -> float:
        """How often a replica reads what the others stored (a quarter interval: a node's
        heartbeats handed round-robin to two replicas then never look late to either)."""
        return min(2.5, max(0.05, self.default_interval / 4))
