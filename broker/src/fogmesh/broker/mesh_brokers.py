"""The brokers of the mesh file: listeners, users and roles, clusters and mDNS announcement.

:class:`BrokerSpec` is one entry of the mesh file's ``brokers`` mapping; the format is
documented in ``docs/mesh.md``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import Field, model_validator

from fogmesh.broker.config_base import MeshConfigError, StrictModel
from fogmesh.broker.topicmatch import is_valid_filter
from fogmesh.protocol import Ident

__all__ = [
    "AnnounceSpec",
    "BrokerSpec",
    "ClusterMember",
    "ClusterSpec",
    "ListenerSpec",
    "ListenerTls",
    "RoleSpec",
    "UserSpec",
]


class ListenerTls(StrictModel):
    """Server certificate for a TLS listener; ``cafile`` also asks clients for certificates."""

    certfile: Path
    keyfile: Path
    cafile: Path | None = None


class ListenerSpec(StrictModel):
    """One network listener of a broker."""

    name: Ident
    type: Literal["tcp", "ws"] = "tcp"
    host: str = "127.0.0.1"
    port: int = Field(ge=1, le=65535)
    tls: ListenerTls | None = None


class RoleSpec(StrictModel):
    """What a role may do.

    Patterns may hold ``{username}``, ``{client}``, ``{node}`` and ``{tenant}``.
    """

    publish: list[str] = Field(default_factory=list)
    subscribe: list[str] = Field(default_factory=list)
    deny_publish: list[str] = Field(default_factory=list)


class UserSpec(StrictModel):
    """A client account: a ``$7$`` hash (see ``fogmesh-broker hash-password``) and a role."""

    username: Ident
    password_hash: str = Field(pattern=r"^\$7\$\d+\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$")
    role: Ident
    node: Ident | None = Field(
        default=None, description="node id for the node role (default: username)"
    )
    tenant: Ident | None = Field(
        default=None, description="tenant id for the tenant role (default: username)"
    )


class ClusterMember(StrictModel):
    """One member of a clustered broker (NATS): its MQTT, client and route listeners."""

    name: Ident
    host: str = "127.0.0.1"
    mqtt_port: int = Field(ge=1, le=65535)
    client_port: int = Field(ge=1, le=65535, description="NATS clients")
    route_port: int = Field(ge=1, le=65535, description="cluster routes between members")
    monitor_port: int | None = Field(default=None, ge=1, le=65535, description="/healthz")


class ClusterSpec(StrictModel):
    """A clustered broker's members (``kind: nats``; see ``docs/cluster.md``)."""

    name: Ident = "fogmesh"
    replicas: int = Field(default=3, ge=1, le=5, description="copies of sessions and retained")
    members: list[ClusterMember] = Field(default_factory=list)


class AnnounceSpec(StrictModel):
    """Announce the broker on the local network by mDNS / DNS-SD (docs/mesh.md, "Zero-conf").

    The service ``_fogmesh-mqtt._tcp`` carries the site name, the broker's name, whether the
    listener speaks TLS and the SHA-256 fingerprint of its certificate.
    """

    enabled: bool = True
    site: Ident | None = Field(default=None, description="default: the broker's name")
    listener: Ident | None = Field(
        default=None, description="default: the first TLS listener, else the first plain TCP one"
    )
    host: str | None = Field(
        default=None,
        description="address announced (default: the listener's; all IPv4 addresses for 0.0.0.0)",
    )


class BrokerSpec(StrictModel):
    """One broker of the mesh (a site, the cloud, or a node with its own broker)."""

    kind: Literal["amqtt", "mosquitto", "nats"] = "amqtt"
    cluster: ClusterSpec | None = Field(default=None, description="members, with kind nats")
    listeners: list[ListenerSpec] = Field(min_length=1)
    data_dir: Path | None = Field(default=None, description="sessions, retained and link queues")
    allow_anonymous: bool = False
    session_expiry: int = Field(
        default=7 * 24 * 3600, ge=1, description="seconds a dead session lives"
    )
    split_horizon: bool = Field(
        default=True, description="never hand a bridged message to another bridge (loop guard)"
    )
    users: list[UserSpec] = Field(default_factory=list)
    roles: dict[str, RoleSpec] = Field(
        default_factory=dict, description="extra or overriding roles"
    )
    announce: AnnounceSpec | None = Field(default=None, description="mDNS announcement (off)")

    @model_validator(mode="after")
    def _unique(self) -> Self:
        names = [lst.name for lst in self.listeners]
        if len(names) != len(set(names)):
            raise ValueError("listener names must be unique")
        users = [u.username for u in self.users]
        if len(users) != len(set(users)):
            raise ValueError("usernames must be unique")
        wanted = self.announce.listener if self.announce is not None else None
        if wanted is not None and wanted not in names:
            raise ValueError(f"announce: no listener {wanted!r}")
        for role in self.roles.values():
            for pat in [*role.publish, *role.subscribe, *role.deny_publish]:
                if not is_valid_filter(pat.replace("{", "").replace("}", "")):
                    raise ValueError(f"invalid ACL pattern {pat!r}")
        return self

    def plain_listener(self) -> ListenerSpec:
        """The first plain TCP listener: where local bridge clients connect."""
        for lst in self.listeners:
            if lst.type == "tcp" and lst.tls is None:
                return lst
        raise MeshConfigError("broker has no plain TCP listener for local links")
