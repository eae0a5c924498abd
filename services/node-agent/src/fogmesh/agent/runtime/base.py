"""The runtime plugin interface (after fog05's plugins): what the reconciler asks of a runtime.

Every method is keyed by the workload's *key* on the node, ``{tenant}/{name}``
(:func:`workload_key`), never by a container id or pid: two tenants may each run an app of
the same name on one node, and their workloads never meet. A plugin keeps no state the node
cannot rebuild: instances are found again by labels (Docker) or by the state directory
(native), so a restarted agent sees the workloads it started before
(:meth:`Runtime.list_instances`) and does not start duplicates.

Typical reconciler flows::

    first run:     prepare(spec) -> create(spec) -> start(key)
    crash/restart: status(key).state is EXITED -> start(key)
    spec changed:  stop(key) -> remove(key, keep_state=True) -> prepare(new) -> create(new)
                   -> start(key)
    removed:       stop(key) -> remove(key)
    migration out: stop(key) -> snapshot(key) -> (ship bytes) -> remove(key)
    migration in:  prepare(spec) -> restore(spec, snapshot) -> start(key)

Errors are always :class:`~fogmesh.agent.runtime.errors.RuntimeFailure` subclasses.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol, runtime_checkable

from fogmesh.protocol.workload import RuntimeKind, WorkloadSpec

__all__ = [
    "LABEL_APP",
    "LABEL_COMPONENT",
    "LABEL_NODE",
    "LABEL_SPEC_HASH",
    "LABEL_TENANT",
    "LABEL_WORKLOAD",
    "InstanceState",
    "InstanceStatus",
    "Runtime",
    "Usage",
    "split_key",
    "workload_env",
    "workload_key",
    "workload_labels",
]

LABEL_TENANT = "fogmesh.tenant"
LABEL_APP = "fogmesh.app"
LABEL_COMPONENT = "fogmesh.component"
LABEL_WORKLOAD = "fogmesh.workload"
LABEL_SPEC_HASH = "fogmesh.spec-hash"
LABEL_NODE = "fogmesh.node"


def workload_key(tenant: str, name: str) -> str:
    """``{tenant}/{name}``: a workload's key on a node. Neither part may contain ``/`` (both are
    :data:`~fogmesh.protocol._ids.Ident`), so the key is unambiguous."""
    return f"{tenant}/{name}"


def split_key(key: str) -> tuple[str, str]:
    """(tenant, name) of a :func:`workload_key`; the tenant is ``""`` for a bare name."""
    tenant, _, name = key.rpartition("/")
    return tenant, name


def workload_labels(spec: WorkloadSpec, node: str) -> dict[str, str]:
    """The ``fogmesh.*`` labels that mark an instance of ``spec`` run by ``node``'s agent."""
    return {
        LABEL_TENANT: spec.tenant,
        LABEL_APP: spec.app,
        LABEL_COMPONENT: spec.component,
        LABEL_WORKLOAD: spec.name,
        LABEL_SPEC_HASH: spec.spec_hash(),
        LABEL_NODE: node,
    }


def workload_env(spec: WorkloadSpec, node: str) -> dict[str, str]:
    """The environment of an instance: ``FOGMESH_{NODE,TENANT,APP,COMPONENT,WORKLOAD,REPLICA}``
    overlaid by ``spec.env`` (the spec wins)."""
    env = {
        "FOGMESH_NODE": node,
        "FOGMESH_TENANT": spec.tenant,
        "FOGMESH_APP": spec.app,
        "FOGMESH_COMPONENT": spec.component,
        "FOGMESH_WORKLOAD": spec.name,
        "FOGMESH_REPLICA": str(spec.replica),
    }
    env.update(spec.env)
    return env


class InstanceState(StrEnum):
    """What an instance is doing, as far as its runtime can tell."""

    ABSENT = "absent"  # no instance (never created, or removed)
    CREATED = "created"  # created (or restored) but never started
    RUNNING = "running"
    EXITED = "exited"  # it ran and stopped, by itself or by stop(); see exit_code


@dataclass(frozen=True)
class InstanceStatus:
    """One instance as its runtime sees it now."""

    name: str
    """The workload's key, ``{tenant}/{name}`` (:func:`workload_key`)."""
    state: InstanceState
    runtime: RuntimeKind
    exit_code: int | None = None
    """The last run's exit code (128 + signal when killed); ``None`` if unknown or running."""
    started_at: float | None = None
    """Unix time the current / last run started; ``None`` if it never ran."""
    finished_at: float | None = None
    runtime_id: str = ""
    """Container id (Docker) or pid (native) of the current / last run."""
    spec_hash: str = ""
    """``WorkloadSpec.spec_hash()`` of the spec the instance was created from."""
    labels: Mapping[str, str] = field(default_factory=dict)
    """The ``fogmesh.*`` labels (tenant, app, component, workload, spec hash, node)."""


@dataclass(frozen=True)
class Usage:
    """Resource use of one instance: CPU in percent of one core (may exceed 100), memory."""

    cpu_percent: float = 0.0
    memory_bytes: int = 0


@runtime_checkable
class Runtime(Protocol):
    """A runtime plugin: runs workloads of one :class:`RuntimeKind` on this node."""

    @property
    def kind(self) -> RuntimeKind:
        """Which :class:`RuntimeKind` this plugin runs."""
        ...

    async def prepare(self, spec: WorkloadSpec) -> None:
        """Make what ``spec`` runs available locally: pull the image, or fetch + verify (sha256)
        + unpack the artefact. Idempotent; never touches an existing instance.

        Raises :class:`PrepareFailed`.
        """
        ...

    async def create(self, spec: WorkloadSpec) -> InstanceStatus:
        """Create the (not started) instance of a prepared ``spec``.

        A no-op if an instance with the same spec hash exists; :class:`InstanceExists` if one
        with another spec hash exists.
        """
        ...

    async def start(self, key: str) -> InstanceStatus:
        """Start the instance; a no-op if it already runs (also one adopted after a restart)."""
        ...

    async def stop(self, key: str, timeout: float = 10.0) -> InstanceStatus:
        """Ask the instance to stop (SIGTERM to its process group), kill it after ``timeout``
        seconds. A no-op if it is not running."""
        ...

    async def remove(self, key: str, *, keep_state: bool = False) -> None:
        """Remove the instance (killing it if it runs). With ``keep_state`` its state (Docker
        volumes, the native ``state/`` folder) stays for a successor of the same name.
        A no-op if there is nothing to remove."""
        ...

    async def status(self, key: str) -> InstanceStatus:
        """The instance's status; ``state`` is :attr:`InstanceState.ABSENT` if there is none."""
        ...

    async def list_instances(self) -> list[InstanceStatus]:
        """Every instance this runtime manages for this node, running or not."""
        ...

    async def logs(self, key: str, tail: int = 100, since: float | None = None) -> list[str]:
        """The last ``tail`` lines of output (stdout and stderr, interleaved), optionally only
        those written after unix time ``since``; without line endings."""
        ...

    async def put_file(self, key: str, path: str, data: bytes, mode: int = 0o644) -> None:
        """Write ``data`` to ``path`` inside the instance (Docker: the container's filesystem;
        native: relative to its working directory). Parent directories are created.
        Raises :class:`UnsafePath` for a path that would escape."""
        ...

    async def get_file(self, key: str, path: str, limit: int) -> bytes:
        """The content of the regular file ``path`` inside the instance (the same paths as
        :meth:`put_file`). Raises :class:`UnsafePath` for a path that would escape or is no
        regular file, :class:`RuntimeFailure` for one larger than ``limit`` bytes."""
        ...

    async def snapshot(self, key: str) -> bytes:
        """The instance's state as a tar archive (best taken while stopped)."""
        ...

    async def restore(self, spec: WorkloadSpec, snapshot: bytes) -> InstanceStatus:
        """Create the instance of a prepared ``spec``, load ``snapshot`` into it; not started."""
        ...

    async def usage(self, key: str) -> Usage:
        """Current CPU and memory use; zeros if the instance does not run."""
        ...

    async def close(self) -> None:
        """Release the plugin's resources. Instances keep running."""
        ...
