"""Workloads: what a node should run (spec, desired state) and what it does run (status, actual).

Each workload moves through :class:`WorkloadPhase` by legal transitions only
(:func:`can_transition`); the node agent is the only writer of a workload's phase.
"""

from __future__ import annotations

import hashlib
import json
from enum import StrEnum
from typing import Literal

from pydantic import ConfigDict, Field, model_validator

from fogmesh.protocol._ids import Ident
from fogmesh.protocol._model import Model
from fogmesh.protocol.envelope import Envelope

__all__ = [
    "TRANSITIONS",
    "ActualState",
    "Artefact",
    "DesiredState",
    "DeviceLossPolicy",
    "MigrationKind",
    "RestartPolicy",
    "RuntimeKind",
    "VolumeSpec",
    "WorkloadPhase",
    "WorkloadSpec",
    "WorkloadStatus",
    "can_transition",
]


class RuntimeKind(StrEnum):
    """Which runtime plugin runs a workload."""

    DOCKER = "docker"
    NATIVE = "native"


class RestartPolicy(StrEnum):
    """When a workload that stopped by itself is started again."""

    ALWAYS = "always"
    ON_FAILURE = "on-failure"
    NEVER = "never"


class MigrationKind(StrEnum):
    """How a workload moves: restarted fresh (cold) or with its state (stateful)."""

    COLD = "cold"
    STATEFUL = "stateful"


class DeviceLossPolicy(StrEnum):
    """What happens to a workload when a device it was given goes away (docs/devices.md):
    it stays (and is told, a ``device-lost`` event) or the migrator moves it to a node with an
    equal device (trigger ``device-lost``)."""

    STAY = "stay"
    MIGRATE = "migrate"


class WorkloadPhase(StrEnum):
    """The workload state machine (after fog05's entity states)."""

    DEFINED = "defined"  # known from desired state, nothing done yet
    CONFIGURED = "configured"  # artefact fetched / image pulled, instance created
    STARTING = "starting"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPING = "stopping"
    STOPPED = "stopped"  # exited or stopped on purpose
    FAILED = "failed"  # could not be prepared / started, or crashed; ``reason`` says why
    MIGRATING = "migrating"
    REMOVED = "removed"  # terminal


_P = WorkloadPhase
TRANSITIONS: dict[WorkloadPhase, frozenset[WorkloadPhase]] = {
    _P.DEFINED: frozenset({_P.CONFIGURED, _P.FAILED, _P.REMOVED}),
    _P.CONFIGURED: frozenset({_P.STARTING, _P.RUNNING, _P.FAILED, _P.REMOVED, _P.DEFINED}),
    _P.STARTING: frozenset({_P.RUNNING, _P.FAILED, _P.STOPPED, _P.STOPPING}),
    _P.RUNNING: frozenset({_P.PAUSED, _P.STOPPING, _P.STOPPED, _P.FAILED, _P.MIGRATING}),
    _P.PAUSED: frozenset({_P.RUNNING, _P.STOPPING, _P.FAILED, _P.MIGRATING}),
    _P.STOPPING: frozenset({_P.STOPPED, _P.FAILED, _P.REMOVED}),
    _P.STOPPED: frozenset({_P.CONFIGURED, _P.STARTING, _P.RUNNING, _P.REMOVED, _P.DEFINED}),
    _P.FAILED: frozenset(
        {_P.CONFIGURED, _P.STARTING, _P.RUNNING, _P.STOPPED, _P.REMOVED, _P.DEFINED}
    ),
    _P.MIGRATING: frozenset({_P.RUNNING, _P.STOPPED, _P.FAILED, _P.REMOVED}),
    _P.REMOVED: frozenset(),
}
"""Legal next phases for each phase."""


def can_transition(current: WorkloadPhase, target: WorkloadPhase) -> bool:
    """Whether a workload may move from ``current`` to ``target`` (staying put is always legal)."""
    return current == target or target in TRANSITIONS[current]


class Artefact(Model):
    """A native app shipped as a ``.tar`` (paper 4.1): a ``ref`` to the artefact store
    (``docs/artefacts.md``) or a URL to fetch (operators only), and its checksum."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str | None = Field(
        default=None, min_length=1, max_length=2048, description="file://, http:// or https://"
    )
    ref: str | None = Field(
        default=None, pattern=r"^sha256:[0-9a-f]{64}$", description="an artefact in the store"
    )
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    command_script: str = Field(
        default="run.sh", max_length=256, description="script inside the tar that starts the app"
    )

    @model_validator(mode="after")
    def _one_source(self) -> Artefact:
        if (self.url is None) == (self.ref is None):
            raise ValueError("an artefact names exactly one of url and ref")
        if self.ref is not None and self.sha256 not in (None, self.ref.removeprefix("sha256:")):
            raise ValueError("sha256 differs from the ref's")
        return self

    @property
    def digest(self) -> str | None:
        """The sha256 (hex) the fetched bytes must have, if known."""
        return self.ref.removeprefix("sha256:") if self.ref is not None else self.sha256


class VolumeSpec(Model):
    """A named volume mounted into a workload; its content moves with a stateful migration."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Ident
    mount_path: str = Field(min_length=1, max_length=1024, pattern=r"^/")


class WorkloadSpec(Model):
    """One instance of one component of one app, as a node should run it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Ident = Field(description="unique on the node, e.g. {app}-{component}-{replica}")
    tenant: Ident
    app: Ident
    component: Ident
    replica: int = Field(default=0, ge=0)
    app_version: str = Field(default="1", max_length=64)
    runtime: RuntimeKind
    image: str | None = Field(default=None, max_length=512)
    image_ref: str | None = Field(
        default=None,
        pattern=r"^sha256:[0-9a-f]{64}$",
        description="`docker save` output in the artefact store",
    )
    executable: str | None = Field(default=None, max_length=1024)
    artefact: Artefact | None = None
    command: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    cpu_limit: float | None = Field(default=None, gt=0, description="in cores")
    memory_limit_bytes: int | None = Field(default=None, gt=0)
    restart_policy: RestartPolicy = RestartPolicy.ALWAYS
    volumes: list[VolumeSpec] = Field(default_factory=list)
    labels: dict[str, str] = Field(default_factory=dict)
    inputs: list[Ident] = Field(default_factory=list, description="streams under data/{t}/{app}/")
    outputs: list[Ident] = Field(default_factory=list)
    migration: MigrationKind = MigrationKind.COLD
    devices: list[str] = Field(
        default_factory=list,
        max_length=64,
        description="devices given to the workload, by name (serial:ttyUSB0) or path",
    )
    on_device_lost: DeviceLossPolicy = Field(
        default=DeviceLossPolicy.STAY, description="stay, or migrate to a node with an equal one"
    )

    @model_validator(mode="after")
    def _runtime_has_what_it_runs(self) -> WorkloadSpec:
        if self.runtime is RuntimeKind.DOCKER and not (self.image or self.image_ref):
            raise ValueError("a docker workload needs an image or an image_ref")
        if self.runtime is RuntimeKind.NATIVE and not (self.executable or self.artefact):
            raise ValueError("a native workload needs an executable or an artefact")
        return self

    def spec_hash(self) -> str:
        """A digest of the spec: when it changes, the running instance must be replaced."""
        # No devices (or no store refs): left out, so the hashes of specs made before the field
        # existed hold.
        dumped = self.model_dump(mode="json", exclude=None if self.devices else {"devices"})
        if self.on_device_lost is DeviceLossPolicy.STAY:  # the default: left out alike
            dumped.pop("on_device_lost", None)
        if self.image_ref is None:
            dumped.pop("image_ref", None)
        if isinstance(dumped.get("artefact"), dict) and dumped["artefact"].get("ref") is None:
            dumped["artefact"].pop("ref", None)
        canonical = json.dumps(dumped, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


class DesiredState(Envelope):
    """``nodes/{node}/desired`` (retained): every workload the node should run.

    Written by the scheduler leader, never by the node; while its site is cut off from the
    cloud, by that site's own migrator (``site_writer``, a site term: see
    :func:`fogmesh.protocol.partition.site_generation`). ``generation`` only grows; a node
    ignores a desired state not newer than the one it holds.
    """

    node: Ident
    generation: int = Field(ge=0)
    workloads: list[WorkloadSpec] = Field(default_factory=list, max_length=1000)
    site_writer: Ident | None = Field(
        default=None,
        description="the site whose own migrator wrote this while cut off (None: the scheduler)",
    )
    pinned: list[Ident] = Field(
        default_factory=list,
        max_length=1000,
        description="workloads whose manifest pins them to this node: a site never moves them",
    )

    @model_validator(mode="after")
    def _names_unique(self) -> DesiredState:
        # unique per tenant: two tenants may each run an app of the same name on one node
        names = [f"{w.tenant}/{w.name}" for w in self.workloads]
        if len(names) != len(set(names)):
            dupes = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"workload names must be unique per tenant; repeated: {dupes}")
        return self


class WorkloadStatus(Model):
    """What one workload is doing now, as its node's agent sees it."""

    model_config = ConfigDict(extra="forbid")

    name: Ident
    tenant: Ident
    app: Ident
    component: Ident
    runtime: RuntimeKind
    phase: WorkloadPhase
    reason: str = Field(default="", max_length=2048)
    spec_hash: str = Field(default="", max_length=64)
    restarts: int = Field(default=0, ge=0)
    since: float = Field(default=0.0, description="unix time of the last phase change")
    runtime_id: str = Field(default="", max_length=128, description="container id or pid")
    cpu_percent: float = Field(default=0.0, ge=0)
    memory_bytes: int = Field(default=0, ge=0)


class ActualState(Envelope):
    """``nodes/{node}/actual`` (retained): what runs; written only by that node's agent."""

    node: Ident
    observed_generation: int = Field(ge=-1, description="-1 before any desired state arrived")
    workloads: list[WorkloadStatus] = Field(default_factory=list)
    rejected: str = Field(default="", max_length=4096, description="why the last desired failed")
    state: Literal["converged", "converging", "degraded"] = "converging"
