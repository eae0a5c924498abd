"""The native runtime plugin: a workload is a process (an executable, or an app shipped as a
``.tar`` with a command script, paper 4.1) run by a small detached shim (:mod:`.shim`).

* Each instance has its own directory ``state_dir/{tenant}/{name}`` (:mod:`.native_state`),
  keyed by :func:`~fogmesh.agent.runtime.base.workload_key`; the process
  runs in ``work/`` with ``HOME=work/``, ``FOGMESH_STATE_DIR=work/state`` and an environment of
  ``base_env`` + ``FOGMESH_*`` + ``spec.env`` only (the agent's own environment is not passed).
* Executable: ``[executable, *command]``. Artefact: ``["/bin/sh", command_script, *command]``,
  the tar unpacked into ``work/``.
* Output: stdout and stderr merged into ``logs/app.log``, rotated at ``log_max_bytes`` with
  ``log_backups`` old files (total at most ``(backups + 1) * max_bytes`` plus one line).
* Isolation (:mod:`.native_isolation`): each tenant's workloads run as that tenant's own
  unprivileged user (``fm-t-{tenant}``), dropped to by the shim before exec; the instance's
  ``work/`` is that user's (0700), everything else is the agent's (0600 / 0700), and file work
  inside ``work/`` (uploads, artefact copies, snapshots, restores) is done as that user too
  (:mod:`.native_user_io`). ``refuse`` turns native workloads away at ``prepare``.
* Limits: with a writable cgroup v2 hierarchy (:mod:`.native_cgroup`) each instance has its
  own cgroup with ``memory.max`` and ``cpu.max``; otherwise memory is bounded by ``RLIMIT_AS``
  (address space, so it over-counts mapped-but-unused memory) and CPU only by niceness
  (``nice 10`` for ``cpu_limit < 1``).
* Devices (docs/devices.md): each device the spec asks for, resolved by the node's
  :class:`~fogmesh.agent.devices.DeviceCatalog`, gets an ACL entry for the workload's own user
  at start (taken back at remove); no other user gains anything.
* Own process group (pgid = pid): stop sends SIGTERM to the group, SIGKILL after the timeout.
* Restart-safe: the shim records pid + create time; a new :class:`NativeRuntime` on the same
  ``state_dir`` re-adopts a process whose pid and create time still match (psutil), and
  ``start`` of a running instance is a no-op, so no duplicate starts.

The lifecycle (prepare, create, start, stop, remove, status, usage) is here; lookups and the
status of an instance on disk are in :mod:`.native_lookup`, logs and files in
:mod:`.native_files`, snapshot and restore in :mod:`.native_snapshot`, device access in
:mod:`.native_devices`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from fogmesh.agent.devices import DeviceCatalog
from fogmesh.agent.runtime.artefact import artefact_dir, fetch_artefact
from fogmesh.agent.runtime.base import (
    InstanceState,
    InstanceStatus,
    Usage,
    workload_env,
    workload_key,
)
from fogmesh.agent.runtime.errors import (
    InstanceExists,
    InstanceNotFound,
    PrepareFailed,
    RuntimeFailure,
    translate_errors,
)
from fogmesh.agent.runtime.native_access import NativeAccess
from fogmesh.agent.runtime.native_devices import NativeDevices
from fogmesh.agent.runtime.native_files import NativeFiles
from fogmesh.agent.runtime.native_io import cpu_and_rss
from fogmesh.agent.runtime.native_isolation import NativeIsolation
from fogmesh.agent.runtime.native_launch import resolve_executable, shim_config, spawn_shim
from fogmesh.agent.runtime.native_snapshot import NativeSnapshots
from fogmesh.agent.runtime.native_state import (
    Layout,
    alive_process,
    read_json,
    shim_alive,
    write_json,
)
from fogmesh.agent.runtime.native_user_io import unpack
from fogmesh.agent.runtime.native_work import work_archive
from fogmesh.protocol.workload import RuntimeKind, WorkloadSpec

if TYPE_CHECKING:
    import tarfile

    from fogmesh.agent.artefact_fetch import SiteFetcher

__all__ = ["DEFAULT_ENV", "NativeRuntime"]

DEFAULT_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
"""The environment every native workload starts from."""

_POLL = 0.05


class NativeRuntime(NativeFiles, NativeSnapshots, NativeDevices):
    """Runs workloads as processes, each in its own directory under ``state_dir``.

    ``isolation`` says who they run as (:class:`NativeIsolation`); ``cgroup_parent`` is the
    cgroup v2 directory for their cgroups (``None``: none; used only where writable).
    """

    def __init__(
        self,
        state_dir: Path,
        node: str,
        *,
        log_max_bytes: int = 1 << 20,
        log_backups: int = 3,
        base_env: Mapping[str, str] | None = None,
        start_timeout: float = 30.0,
        isolation: NativeIsolation = NativeIsolation.AUTO,
        cgroup_parent: Path | None = None,
        devices: DeviceCatalog | None = None,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.devices = devices if devices is not None else DeviceCatalog()
        self.node = node
        self.log_max_bytes = log_max_bytes
        self.log_backups = log_backups
        self.base_env = dict(DEFAULT_ENV if base_env is None else base_env)
        self.start_timeout = start_timeout
        self.cache = self.state_dir / ".artefacts"
        self.access = NativeAccess(self.state_dir, isolation, cgroup_parent)
        self.fetcher: SiteFetcher | None = None
        """Fetches ``artefact.ref`` from the site's cache (set by the agent)."""

    @property
    def kind(self) -> RuntimeKind:
        """Always :attr:`RuntimeKind.NATIVE`."""
        return RuntimeKind.NATIVE

    # -- Runtime ------------------------------------------------------------------------------

    async def prepare(self, spec: WorkloadSpec) -> None:
        """Refuse if this node runs no native workloads; make the tenant's user; check the
        executable exists, or fetch + verify + unpack the artefact into the cache."""
        with translate_errors(f"prepare {spec.name}", failure=PrepareFailed):
            await self._run_as(spec)
        if spec.artefact is not None:
            self.access.check_local_artefact(spec)
            source = None
            if spec.artefact.ref is not None:
                if self.fetcher is None:
                    raise PrepareFailed(f"prepare {spec.name}: no artefact store on this node")
                source = await self.fetcher.fetch(spec.artefact.ref, spec.tenant)
            await fetch_artefact(spec.artefact, self.cache, source=source)
            return
        if resolve_executable(str(spec.executable)) is None:
            raise PrepareFailed(f"prepare {spec.name}: no executable {spec.executable!r}")

    async def create(self, spec: WorkloadSpec) -> InstanceStatus:
        """Make the instance directory (artefact copied into ``work/``) and write ``spec.json``."""
        status, _made = await self._create(spec, None)
        return status

    async def _create(
        self, spec: WorkloadSpec, snapshot: tarfile.TarFile | None
    ) -> tuple[InstanceStatus, bool]:
        """:meth:`create`, with ``snapshot``'s ``state/`` in the same single unpack as the
        artefact (one helper process as the workload's user for all of ``work/``); whether it
        made the instance (``False``: one with this spec was there, left as it was)."""
        key = workload_key(spec.tenant, spec.name)
        layout = self._layout(key)
        with translate_errors(f"create {spec.name}"):
            existing = self._status(key)
            if existing.state is not InstanceState.ABSENT:
                if existing.spec_hash == spec.spec_hash():
                    return existing, False
                raise InstanceExists(
                    f"workload {key!r} exists with spec {existing.spec_hash}; remove it"
                )
            run_as = await self._run_as(spec)
            source = None
            if spec.artefact is not None:
                source = artefact_dir(self.cache, spec.artefact)
                if not source.is_dir():
                    raise PrepareFailed(f"create {spec.name}: artefact not prepared")
            unpacking = source is not None or snapshot is not None
            # an unpack makes work/state itself (its archive holds the directory)
            await asyncio.to_thread(self.access.make_instance, layout, run_as, state=not unpacking)
            if unpacking:
                archive = await asyncio.to_thread(work_archive, source, snapshot)
                await asyncio.to_thread(unpack, self.access.owner(run_as), layout.work, archive)
                layout.work.chmod(0o700)
            write_json(layout.spec, spec.model_dump(mode="json"))
            return self._status(key), True

    async def start(self, key: str) -> InstanceStatus:
        """Start the process through a new shim; a no-op if it runs (adopted or not)."""
        with translate_errors(f"start {key}", missing=InstanceNotFound):
            spec = self._spec(key)
            current = self._status(key)
            if current.state is InstanceState.RUNNING:
                return current
            layout = self._layout(key)
            layout.record.unlink(missing_ok=True)
            layout.exit.unlink(missing_ok=True)
            config = await asyncio.to_thread(self._shim_config, spec, layout)
            write_json(layout.shim_config, config)
            await asyncio.to_thread(spawn_shim, layout)
            deadline = time.monotonic() + self.start_timeout
            while time.monotonic() < deadline:
                if layout.record.exists():
                    return self._status(key)
                ended = read_json(layout.exit)
                if ended is not None:
                    raise RuntimeFailure(f"start {key}: {ended.get('error', 'exec failed')}")
                await asyncio.sleep(_POLL)
            raise RuntimeFailure(f"start {key}: no process after {self.start_timeout}s")

    async def stop(self, key: str, timeout: float = 10.0) -> InstanceStatus:
        """SIGTERM to the process group, SIGKILL after ``timeout``; a no-op unless running."""
        with translate_errors(f"stop {key}"):
            layout = self._layout(key)
            record = read_json(layout.record)
            if record is None:
                return self._status(key)
            if alive_process(record) is None:
                if shim_alive(record):  # the app is gone: its shim is recording the exit
                    await _wait(layout.exit.exists, 10.0)
                return self._status(key)
            pgid = int(record["pid"])
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGTERM)
            if not await _wait(lambda: alive_process(record) is None, timeout):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pgid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):  # children left in the group
                os.killpg(pgid, signal.SIGKILL)
            await _wait(layout.exit.exists, 10.0)
            return self._status(key)

    async def remove(self, key: str, *, keep_state: bool = False) -> None:
        """Kill the process if it runs and delete the instance (but ``work/state`` if
        ``keep_state``) and its cgroup."""
        layout = self._layout(key)
        if not layout.root.exists():
            return
        await self.stop(key, timeout=2.0)
        with translate_errors(f"remove {key}"):
            with contextlib.suppress(InstanceNotFound):
                await asyncio.to_thread(self._device_access, self._spec(key), allow=False)
            if self.access.cgroups is not None:
                self.access.cgroups.remove(self._cgroup_key(key))
            if not keep_state:
                # rmtree works on directory fds, so links planted in work/ are not followed
                await asyncio.to_thread(shutil.rmtree, layout.root)
                return
            layout.spec.unlink(missing_ok=True)
            for child in [*layout.root.iterdir(), *layout.work.glob("*")]:
                if child in (layout.work, layout.state) or not child.exists():
                    continue
                if child.is_dir() and not child.is_symlink():
                    await asyncio.to_thread(shutil.rmtree, child)
                else:
                    child.unlink()

    async def status(self, key: str) -> InstanceStatus:
        """The instance's status, or ``ABSENT``.

        Right after the process dies its shim may not have written the exit code yet: while
        the shim lives, this waits (up to 5 s) for it.
        """
        with translate_errors(f"status {key}"):
            current = self._status(key)
            layout = self._layout(key)
            pending = current.state is InstanceState.EXITED and current.exit_code is None
            if pending and shim_alive(read_json(layout.record)):
                await _wait(layout.exit.exists, 5.0)
                current = self._status(key)
            return current

    async def list_instances(self) -> list[InstanceStatus]:
        """Every instance directory (with a ``spec.json``) under ``state_dir/{tenant}/``.

        An instance an older agent left in the flat layout (``state_dir/{dir}/``, its process
        run as the agent's user) is listed as ``/{dir}``, a key no desired workload has: the
        reconciler stops and removes it and starts the workload anew, isolated.
        """
        with translate_errors("list native instances"):
            if not self.state_dir.is_dir():
                return []
            found = [
                self._status(f"/{legacy.parent.name}")
                for legacy in sorted(self.state_dir.glob("*/spec.json"))
            ]
            for child in sorted(self.state_dir.glob("*/*/spec.json")):
                raw = read_json(child)
                if raw is None or not isinstance(raw.get("name"), str):
                    continue
                key = workload_key(str(raw.get("tenant", "")), raw["name"])
                if self._layout(key).spec == child:
                    found.append(self._status(key))
            return [s for s in found if s.state is not InstanceState.ABSENT]

    async def usage(self, key: str) -> Usage:
        """CPU (over 0.5 s) and RSS of the process and its descendants; zeros if not running."""
        with translate_errors(f"usage {key}"):
            proc = alive_process(read_json(self._layout(key).record))
            if proc is None:
                return Usage()
            before, t0 = cpu_and_rss(proc)[0], time.monotonic()
            await asyncio.sleep(0.5)
            cpu, rss = cpu_and_rss(proc)
            elapsed = max(time.monotonic() - t0, 1e-6)
            return Usage(cpu_percent=max(cpu - before, 0.0) / elapsed * 100.0, memory_bytes=rss)

    async def close(self) -> None:
        """Nothing to release: processes and their shims keep running."""

    # -- helpers ------------------------------------------------------------------------------

    def _cgroup_key(self, key: str) -> str:
        return f"{self.node}/{key}"  # several agents of one host share the cgroup parent

    def _shim_config(self, spec: WorkloadSpec, layout: Layout) -> dict[str, object]:
        run_as = self.access.run_as(spec.tenant)
        self._device_access(spec, allow=True)
        cgroup = None
        if self.access.cgroups is not None:
            key = self._cgroup_key(workload_key(spec.tenant, spec.name))
            leaf = self.access.cgroups.leaf(key, cpu=spec.cpu_limit, memory=spec.memory_limit_bytes)
            cgroup = str(leaf)
        return shim_config(
            spec,
            layout,
            run_as,
            base_env=self.base_env,
            env=workload_env(spec, self.node),
            cgroup=cgroup,
            log_max_bytes=self.log_max_bytes,
            log_backups=self.log_backups,
        )


async def _wait(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(_POLL)
