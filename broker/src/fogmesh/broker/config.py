"""The mesh description file: brokers, their listeners, users and roles, and the links between them.

Loaded from YAML and validated with pydantic; :func:`load_mesh` is the only entry point. The
format is documented in ``docs/mesh.md``.

The models live by role: :mod:`fogmesh.broker.mesh_brokers` (brokers, listeners, users, roles),
:mod:`fogmesh.broker.mesh_links` (links, endpoints, rules, paths) and
:mod:`fogmesh.broker.config_base` (the strict base and :class:`MeshConfigError`); this module
holds the whole mesh, :class:`MeshSpec`, with endpoint resolution, and re-exports them all.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal, Self

import yaml
from pydantic import BaseModel, Field, ValidationError, model_validator

from fogmesh.broker.config_base import MeshConfigError, StrictModel
from fogmesh.broker.mesh_brokers import (
    AnnounceSpec,
    BrokerSpec,
    ClusterMember,
    ClusterSpec,
    ListenerSpec,
    ListenerTls,
    RoleSpec,
    UserSpec,
)
from fogmesh.broker.mesh_links import (
    ClientTls,
    DrainSpec,
    Endpoint,
    LinkSpec,
    PathSpec,
    QueueSpec,
    RuleSpec,
)
from fogmesh.protocol import Ident

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


class ResolvedEndpoint(BaseModel):
    """An endpoint with its address and credentials worked out."""

    host: str
    port: int
    username: str | None
    password: str | None
    tls: ClientTls | None
    kind: Literal["amqtt", "mosquitto", "nats", "external"]


class MeshSpec(StrictModel):
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
