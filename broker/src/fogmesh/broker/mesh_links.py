"""The links of the mesh file: their endpoints, rules, paths, disk queue and backlog draining.

:class:`LinkSpec` is one entry of the mesh file's ``links`` list; the format is documented in
``docs/mesh.md``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import Field, field_validator, model_validator

from fogmesh.broker.config_base import StrictModel
from fogmesh.broker.topicmatch import is_valid_filter
from fogmesh.protocol import Ident

__all__ = [
    "ClientTls",
    "DrainSpec",
    "Endpoint",
    "LinkSpec",
    "PathSpec",
    "QueueSpec",
    "RuleSpec",
]


class ClientTls(StrictModel):
    """TLS settings of a link's client side."""

    cafile: Path | None = None
    certfile: Path | None = None
    keyfile: Path | None = None
    insecure: bool = Field(default=False, description="skip hostname check (tests only)")


class Endpoint(StrictModel):
    """Where one end of a link connects: a mesh broker by name, or host and port."""

    broker: Ident | None = None
    listener: Ident | None = None
    host: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    username: str | None = None
    password: str | None = Field(default=None, description="plain password (prefer password_env)")
    password_env: str | None = Field(default=None, description="environment variable holding it")
    tls: ClientTls | None = None


class RuleSpec(StrictModel):
    """Like Mosquitto's ``topic pattern direction qos local_prefix remote_prefix``."""

    pattern: str
    direction: Literal["in", "out", "both"] = "out"
    qos: int = Field(
        default=1,
        ge=0,
        le=1,
        description=(
            "0 or 1: a QoS 1 message is acknowledged only once it is in the link's disk queue; "
            "at QoS 2 the client would acknowledge (PUBREC) before it reached the disk"
        ),
    )
    local_prefix: str = ""
    remote_prefix: str = ""
    paths: list[Ident] | None = Field(
        default=None, description="the link's paths this rule may use (None: every path)"
    )

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, value: str) -> str:
        if not is_valid_filter(value):
            raise ValueError(f"invalid topic pattern {value!r}")
        return value

    @field_validator("local_prefix", "remote_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if any(c in value for c in "+#\x00"):
            raise ValueError("a prefix cannot hold wildcards")
        return value


class QueueSpec(StrictModel):
    """The link's disk queue bound. ``drop``: which message goes when it is full."""

    max_messages: int = Field(default=1_000_000, ge=1)
    drop: Literal["oldest", "newest"] = "oldest"


class DrainSpec(StrictModel):
    """How a link empties a backlog (docs/mesh.md, "Draining a backlog").

    ``rate`` None (default): the queue crosses as fast as the far broker acknowledges, in one
    order. With a ``rate``, a queue deeper than ``backlog`` messages when a side connects is a
    backlog: it crosses at ``rate`` messages per second at most, oldest first, while messages
    arriving meanwhile cross at once; in the backlog only the newest message of each retained
    topic, and of each topic ``latest_only`` matches, crosses.
    """

    rate: float | None = Field(default=None, gt=0, description="messages/s for a backlog")
    backlog: int = Field(default=1000, ge=0, description="queue depth that makes a backlog")
    latest_only: list[str] = Field(
        default_factory=lambda: ["fm/v1/nodes/+/heartbeat"],
        description="filters of topics whose older queued messages are stale news",
    )

    @model_validator(mode="after")
    def _valid_filters(self) -> Self:
        bad = [f for f in self.latest_only if not is_valid_filter(f)]
        if bad:
            raise ValueError(f"latest_only: not a topic filter: {', '.join(bad)}")
        return self


class PathSpec(StrictModel):
    """One way to reach a link's remote broker (docs/mesh.md, "Paths: a link with a fallback").

    Unset address fields are the link's ``remote``'s; credentials are always the remote's.
    """

    name: Ident
    broker: Ident | None = None
    listener: Ident | None = None
    host: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    tls: ClientTls | None = None
    keepalive: int | None = Field(
        default=None,
        ge=1,
        le=3600,
        description="seconds (default: the link's); a silent cut is noticed after about two",
    )
    connect_timeout: float = Field(default=5.0, gt=0, le=60)
    rate: float | None = Field(
        default=None, gt=0, description="bytes/s the link sends over this path at most"
    )
    budget_bytes: int | None = Field(
        default=None, ge=1, description="bytes per calendar month (UTC), both directions"
    )


class LinkSpec(StrictModel):
    """A bridge link, run by the process of broker ``broker`` (its local end)."""

    name: Ident
    broker: Ident
    kind: Literal["wan", "lan"] = "wan"
    local: Endpoint = Field(default_factory=Endpoint)
    remote: Endpoint
    rules: list[RuleSpec] = Field(min_length=1)
    paths: list[PathSpec] = Field(
        default_factory=list, description="ways to the remote, preferred first (none: remote)"
    )
    probe_every: float = Field(
        default=5.0, gt=0, le=3600, description="seconds between tries of a preferred path"
    )
    queue: QueueSpec = Field(default_factory=QueueSpec)
    drain: DrainSpec = Field(default_factory=DrainSpec)
    keepalive: int = Field(default=30, ge=5, le=3600)
    backoff_base: float = Field(default=0.5, gt=0, le=60)
    backoff_cap: float = Field(default=30.0, gt=0, le=3600)

    @model_validator(mode="after")
    def _paths(self) -> Self:
        names = [p.name for p in self.paths]
        if len(names) != len(set(names)):
            raise ValueError(f"link {self.name}: path names must be unique")
        for rule in self.rules:
            unknown = sorted(set(rule.paths or []) - set(names))
            if unknown:
                raise ValueError(
                    f"link {self.name}: rule {rule.pattern!r} names unknown paths {unknown}"
                )
        return self
