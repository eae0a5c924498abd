"""The mesh description file: brokers, their listeners, users and roles, and the links between them.

Loaded from YAML and validated with pydantic; :func:`load_mesh` is the only entry point. The
format is documented in ``docs/mesh.md``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from fogmesh.broker.topicmatch import is_valid_filter
from fogmesh.protocol import FogmeshError, Ident

__all__ = [
    "AnnounceSpec",
    "BrokerSpec",
    "ClientTls",
    "ClusterMember",
    "ClusterSpec",
    "DrainSpec",
    "Endpoint",
    "LinkSpec",
    "ListenerSpec",
    "ListenerTls",
    "MeshConfigError",
    "MeshSpec",
    "PathSpec",
    "QueueSpec",
    "ResolvedEndpoint",
    "RoleSpec",
    "RuleSpec",
    "UserSpec",
    "load_mesh",
]


class MeshConfigError(FogmeshError, ValueError):
    """The mesh file is missing, unreadable or invalid."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ListenerTls(_Strict):
    """Server certificate for a TLS listener; ``cafile`` also asks clients for certificates."""

    certfile: Path
    keyfile: Path
    cafile: Path | None = None


class ListenerSpec(_Strict):
    """One network listener of a broker."""

    name: Ident
    type: Literal["tcp", "ws"] = "tcp"
    host: str = "127.0.0.1"
    port: int = Field(ge=1, le=65535)
    tls: ListenerTls | None = None


class RoleSpec(_Strict):
    """What a role may do.

    Patterns may hold ``{username}``, ``{client}``, ``{node}`` and ``{tenant}``.
    """

    publish: list[str] = Field(default_factory=list)
    subscribe: list[str] = Field(default_factory=list)
    deny_publish: list[str] = Field(default_factory=list)


class UserSpec(_Strict):
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


class ClusterMember(_Strict):
    """One member of a clustered broker (NATS): its MQTT, client and route listeners."""

    name: Ident
    host: str = "127.0.0.1"
    mqtt_port: int = Field(ge=1, le=65535)
    client_port: int = Field(ge=1, le=65535, description="NATS clients")
    route_port: int = Field(ge=1, le=65535, description="cluster routes between members")
    monitor_port: int | None = Field(default=None, ge=1, le=65535, description="/healthz")


class ClusterSpec(_Strict):
    """A clustered broker's members (``kind: nats``; see ``docs/cluster.md``)."""

    name: Ident = "fogmesh"
    replicas: int = Field(default=3, ge=1, le=5, description="copies of sessions and retained")
    members: list[ClusterMember] = Field(default_factory=list)


class AnnounceSpec(_Strict):
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


class BrokerSpec(_Strict):
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


class ClientTls(_Strict):
    """TLS settings of a link's client side."""

    cafile: Path | None = None
    certfile: Path | None = None
    keyfile: Path | None = None
    insecure: bool = Field(default=False, description="skip hostname check (tests only)")


class Endpoint(_Strict):
    """Where one end of a link connects: a mesh broker by name, or host and port."""

    broker: Ident | None = None
    listener: Ident | None = None
    host: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    username: str | None = None
    password: str | None = Field(default=None, description="plain password (prefer password_env)")
    password_env: str | None = Field(default=None, description="environment variable holding it")
    tls: ClientTls | None = None


class RuleSpec(_Strict):
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


class QueueSpec(_Strict):
    """The link's disk queue bound. ``drop``: which message goes when it is full."""

    max_messages: int = Field(default=1_000_000, ge=1)
    drop: Literal["oldest", "newest"] = "oldest"


class DrainSpec(_Strict):
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


class PathSpec(_Strict):
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


class LinkSpec(_Strict):
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


class ResolvedEndpoint(BaseModel):
    """An endpoint with its address and credentials worked out."""

    host: str
    port: int
    username: str | None
    password: str | None
    tls: ClientTls | None
    kind: Literal["amqtt", "mosquitto", "nats", "external"]


class MeshSpec(_Strict):
    """The whole mesh file."""

    brokers: dict[Ident, BrokerSpec] = Field(min_length=1)
    links: list[LinkSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> Self:
        seen: set[tuple[str, str]] = set()
        for link in self.links:
            if link.broker not in self.brokers:
                raise ValueError(f"link {link.name}: unknown broker {link.broker!r}")
            if (link.broker, link.name) in seen:
                raise ValueError(f"link {link.name} appears twice on broker {link.broker}")
            seen.add((link.broker, link.name))
            if link.remote.broker is None and (
                link.remote.host is None or link.remote.port is None
            ):
                raise ValueError(f"link {link.name}: remote needs a broker name or host and port")
            if link.remote.broker is not None:
                if link.remote.broker not in self.brokers:
                    raise ValueError(
                        f"link {link.name}: unknown remote broker {link.remote.broker!r}"
                    )
                if link.remote.broker == link.broker:
                    raise ValueError(f"link {link.name} joins broker {link.broker} to itself")
            for path in link.paths:
                if path.broker is not None and path.broker not in self.brokers:
                    raise ValueError(f"link {link.name}: path {path.name}: unknown broker")
        self._check_cycles()
        return self

    def _check_cycles(self) -> None:
        """Refuse a cycle of links through a broker that relays bridged messages.

        With split horizon every broker on a cycle drops bridge-to-bridge traffic, which is what
        makes a triangle of ``both`` links loop-free; one broker without it would circulate.
        """
        parent = {name: name for name in self.brokers}

        def root(x: str) -> str:
            while parent[x] != x:
                parent[x] = parent[parent[x]]
                x = parent[x]
            return x

        edges = [(lk.broker, lk.remote.broker) for lk in self.links if lk.remote.broker]
        on_cycle: set[str] = set()
        for a, b in edges:
            assert b is not None
            ra, rb = root(a), root(b)
            if ra == rb:
                on_cycle.update(n for n in self.brokers if root(n) == ra)
            parent[ra] = rb
        for name in sorted(on_cycle):
            spec = self.brokers[name]
            if spec.kind != "amqtt" or not spec.split_horizon:
                raise ValueError(
                    f"broker {name} is on a cycle of links but does not apply split horizon"
                    " (only amqtt brokers with split_horizon: true may sit on a cycle)"
                )

    def require_broker(self, name: str) -> BrokerSpec:
        """The spec of broker ``name``; :class:`MeshConfigError` if the mesh has none."""
        if name not in self.brokers:
            raise MeshConfigError(f"no broker {name!r} in the mesh file")
        return self.brokers[name]

    def links_of(self, broker: str) -> list[LinkSpec]:
        """The links that ``broker``'s process runs."""
        return [lk for lk in self.links if lk.broker == broker]

    def resolve_paths(self, link: LinkSpec) -> list[tuple[PathSpec, ResolvedEndpoint]]:
        """Each path of ``link``, preferred first, with its address worked out; a link with
        no ``paths`` has one, ``default``, the ``remote`` itself."""
        if not link.paths:
            return [(PathSpec(name="default"), self.resolve(link.remote))]
        out = []
        for path in link.paths:
            update = {
                k: v
                for k, v in path.model_dump(include={"broker", "listener", "host", "port"}).items()
                if v is not None
            }
            if path.tls is not None:
                update["tls"] = path.tls
            if path.host is not None and path.broker is None:
                update["broker"] = link.remote.broker  # keeps the broker's kind, new address
            out.append((path, self.resolve(link.remote.model_copy(update=update))))
        return out

    def resolve(self, end: Endpoint, *, default_broker: str | None = None) -> ResolvedEndpoint:
        """Turn an endpoint into host, port and credentials."""
        password = end.password
        if end.password_env:
            password = os.environ.get(end.password_env)
            if password is None:
                raise MeshConfigError(f"environment variable {end.password_env} is not set")
        name = end.broker or (None if end.host else default_broker)
        if name is None:
            assert end.host is not None
            assert end.port is not None
            return ResolvedEndpoint(
                host=end.host,
                port=end.port,
                username=end.username,
                password=password,
                tls=end.tls,
                kind="external",
            )
        spec = self.brokers[name]
        if end.listener:
            found = [lst for lst in spec.listeners if lst.name == end.listener]
            if not found:
                raise MeshConfigError(f"broker {name} has no listener {end.listener}")
            lst = found[0]
        else:
            lst = spec.plain_listener()
        host = end.host or ("127.0.0.1" if lst.host in ("0.0.0.0", "", "::") else lst.host)  # noqa: S104
        return ResolvedEndpoint(
            host=host,
            port=end.port or lst.port,
            username=end.username,
            password=password,
            tls=end.tls,
            kind=spec.kind,
        )


def load_mesh(path: Path) -> MeshSpec:
    """Read and validate a mesh file; raises :class:`MeshConfigError` with a readable reason."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as exc:
        raise MeshConfigError(f"cannot read mesh file {path}: {exc}") from exc
    try:
        return MeshSpec.model_validate(raw)
    except ValidationError as exc:
        raise MeshConfigError(f"invalid mesh file {path}: {exc}") from exc
