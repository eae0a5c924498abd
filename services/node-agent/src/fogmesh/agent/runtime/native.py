"""The native runtime plugin: a workload is a process (an executable, or an app shipped as a
``.tar`` with a command script, paper 4.1) run by a small detached shim (:mod:`.shim`).

* Each instance has its own directory under ``state_dir`` (:mod:`.native_state`); the process
  runs in ``work/`` with ``HOME=work/``, ``FOGMESH_STATE_DIR=work/state`` and an environment of
  ``base_env`` + ``FOGMESH_*`` + ``spec.env`` only (the agent's own environment is not passed).
* Executable: ``[executable, *command]``. Artefact: ``["/bin/sh", command_script, *command]``,
  the tar unpacked into ``work/``.
* Output: stdout and stderr merged into ``logs/app.log``, rotated at ``log_max_bytes`` with
  ``log_backups`` old files (total at most ``(backups + 1) * max_bytes`` plus one line).
* Limits: memory by ``RLIMIT_AS`` (address space, so it over-counts mapped-but-unused memory);
  CPU only by niceness (``nice 10`` for ``cpu_limit < 1``): no cgroup is used, so CPU is not
  capped.
* Own process group (pgid = pid): stop sends SIGTERM to the group, SIGKILL after the timeout.
* Restart-safe: the shim records pid + create time; a new :class:`NativeRuntime` on the same
  ``state_dir`` re-adopts a process whose pid and create time still match (psutil), and
  ``start`` of a running instance is a no-op, so no duplicate starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path

from fogmesh.agent.runtime.artefact import artefact_dir, fetch_artefact
from fogmesh.agent.runtime.base import (
    InstanceState,
    InstanceStatus,
    Usage,
    workload_env,
    workload_labels,
)
from fogmesh.agent.runtime.errors import (
    InstanceExists,
    InstanceNotFound,
    PrepareFailed,
    RuntimeFailure,
    translate_errors,
)
from fogmesh.agent.runtime.native_io import cpu_and_rss, read_logs, tar_state
from fogmesh.agent.runtime.native_state import (
    Layout,
    alive_process,
    read_json,
    shim_alive,
    write_json,
)
from fogmesh.agent.runtime.tarutil import extract_safely, read_manifest, safe_join
from fogmesh.protocol.workload import RuntimeKind, WorkloadSpec

__all__ = ["DEFAULT_ENV", "NativeRuntime"]

DEFAULT_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
"""The environment every native workload starts from."""

_SHIM = Path(__file__).with_name("shim.py")
_POLL = 0.05


class NativeRuntime:
    """Runs workloads as processes, each in its own directory under ``state_dir``."""

    def __init__(
        self,
        state_dir: Path,
        node: str,
        *,
        log_max_bytes: int = 1 << 20,
        log_backups: int = 3,
        base_env: Mapping[str, str] | None = None,
        start_timeout: float = 30.0,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.node = node
        self.log_max_bytes = log_max_bytes
        self.log_backups = log_backups
        self.base_env = dict(DEFAULT_ENV if base_env is None else base_env)
        self.start_timeout = start_timeout
        self.cache = self.state_dir / ".artefacts"

    @property
    def kind(self) -> RuntimeKind:
        """Always :attr:`RuntimeKind.NATIVE`."""
        return RuntimeKind.NATIVE

    # -- lookup -------------------------------------------------------------------------------

    def _layout(self, name: str) -> Layout:
        return Layout.of(self.state_dir, name)

    def _spec(self, name: str) -> WorkloadSpec:
        raw = read_json(self._layout(name).spec)
        if raw is None:
            raise InstanceNotFound(f"no native instance {name!r} in {self.state_dir}")
        return WorkloadSpec.model_validate(raw)

    def _status(self, name: str) -> InstanceStatus:
        layout = self._layout(name)
        raw = read_json(layout.spec)
        if raw is None:
            return InstanceStatus(name, InstanceState.ABSENT, RuntimeKind.NATIVE)
        spec = WorkloadSpec.model_validate(raw)
        record, ended = read_json(layout.record), read_json(layout.exit)
        base = InstanceStatus(
            name=spec.name,
            state=InstanceState.CREATED,
            runtime=RuntimeKind.NATIVE,
            spec_hash=spec.spec_hash(),
            labels=workload_labels(spec, self.node),
        )
        if record is not None:
            started = float(record.get("started_at") or 0) or None
            pid = str(record.get("pid", ""))
            if alive_process(record) is not None and ended is None:
                return replace(
                    base, state=InstanceState.RUNNING, started_at=started, runtime_id=pid
                )
            ended = ended or {}
            return replace(
                base,
                state=InstanceState.EXITED,
                exit_code=ended.get("exit_code"),
                started_at=started,
                finished_at=ended.get("finished_at"),
                runtime_id=pid,
            )
        if ended is not None:  # the shim could not even exec the program
            return replace(base, state=InstanceState.EXITED, exit_code=ended.get("exit_code"))
        return base

    # -- Runtime ------------------------------------------------------------------------------

    async def prepare(self, spec: WorkloadSpec) -> None:
        """Check the executable exists, or fetch + verify + unpack the artefact into the cache."""
        if spec.artefact is not None:
            await fetch_artefact(spec.artefact, self.cache)
            return
        if _resolve(str(spec.executable)) is None:
            raise PrepareFailed(f"prepare {spec.name}: no executable {spec.executable!r}")

    async def create(self, spec: WorkloadSpec) -> InstanceStatus:
        """Make the instance directory (artefact copied into ``work/``) and write ``spec.json``."""
        layout = self._layout(spec.name)
        with translate_errors(f"create {spec.name}"):
            existing = self._status(spec.name)
            if existing.state is not InstanceState.ABSENT:
                if existing.spec_hash == spec.spec_hash():
                    return existing
                raise InstanceExists(
                    f"workload {spec.name!r} exists with spec {existing.spec_hash}; remove it"
                )
            if spec.artefact is not None:
                source = artefact_dir(self.cache, spec.artefact)
                if not source.is_dir():
                    raise PrepareFailed(f"create {spec.name}: artefact not prepared")
                await asyncio.to_thread(
                    shutil.copytree, source, layout.work, symlinks=True, dirs_exist_ok=True
                )
            for folder in (layout.state, layout.logs, layout.run):
                folder.mkdir(parents=True, exist_ok=True)
            write_json(layout.spec, spec.model_dump(mode="json"))
            return self._status(spec.name)

    async def start(self, name: str) -> InstanceStatus:
        """Start the process through a new shim; a no-op if it runs (adopted or not)."""
        with translate_errors(f"start {name}", missing=InstanceNotFound):
            spec = self._spec(name)
            current = self._status(name)
            if current.state is InstanceState.RUNNING:
                return current
            layout = self._layout(name)
            layout.record.unlink(missing_ok=True)
            layout.exit.unlink(missing_ok=True)
            write_json(layout.shim_config, self._shim_config(spec, layout))
            await asyncio.to_thread(self._spawn_shim, layout)
            deadline = time.monotonic() + self.start_timeout
            while time.monotonic() < deadline:
                if layout.record.exists():
                    return self._status(name)
                ended = read_json(layout.exit)
                if ended is not None:
                    raise RuntimeFailure(f"start {name}: {ended.get('error', 'exec failed')}")
                await asyncio.sleep(_POLL)
            raise RuntimeFailure(f"start {name}: no process after {self.start_timeout}s")

    async def stop(self, name: str, timeout: float = 10.0) -> InstanceStatus:
        """SIGTERM to the process group, SIGKILL after ``timeout``; a no-op unless running."""
        with translate_errors(f"stop {name}"):
            layout = self._layout(name)
            record = read_json(layout.record)
            proc = alive_process(record)
            if record is None or proc is None:
                return self._status(name)
            pgid = int(record["pid"])
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGTERM)
            if not await _wait(lambda: alive_process(record) is None, timeout):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pgid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):  # children left in the group
                os.killpg(pgid, signal.SIGKILL)
            await _wait(layout.exit.exists, 10.0)
            return self._status(name)

    async def remove(self, name: str, *, keep_state: bool = False) -> None:
        """Kill the process if it runs and delete the instance (but ``work/state`` if
        ``keep_state``)."""
        layout = self._layout(name)
        if not layout.root.exists():
            return
        await self.stop(name, timeout=2.0)
        with translate_errors(f"remove {name}"):
            if not keep_state:
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

    async def status(self, name: str) -> InstanceStatus:
        """The instance's status, or ``ABSENT``.

        Right after the process dies its shim may not have written the exit code yet: while
        the shim lives, this waits (up to 5 s) for it.
        """
        with translate_errors(f"status {name}"):
            current = self._status(name)
            layout = self._layout(name)
            pending = current.state is InstanceState.EXITED and current.exit_code is None
            if pending and shim_alive(read_json(layout.record)):
                await _wait(layout.exit.exists, 5.0)
                current = self._status(name)
            return current

    async def list_instances(self) -> list[InstanceStatus]:
        """Every instance directory (with a ``spec.json``) under ``state_dir``."""
        with translate_errors("list native instances"):
            if not self.state_dir.is_dir():
                return []
            found = []
            for child in sorted(self.state_dir.iterdir()):
                raw = read_json(child / "spec.json")
                if raw is not None and isinstance(raw.get("name"), str):
                    found.append(self._status(raw["name"]))
            return [s for s in found if s.state is not InstanceState.ABSENT]

    async def logs(self, name: str, tail: int = 100, since: float | None = None) -> list[str]:
        """The last ``tail`` lines of the rotated logs (written after ``since`` if given)."""
        if tail <= 0:
            return []
        with translate_errors(f"logs {name}", missing=InstanceNotFound):
            self._spec(name)
            files = self._layout(name).log_files()
            return await asyncio.to_thread(read_logs, files, tail, since)

    async def put_file(self, name: str, path: str, data: bytes, mode: int = 0o644) -> None:
        """Write ``data`` to ``path`` relative to ``work/`` (``UnsafePath`` if it escapes)."""
        with translate_errors(f"put_file {name}:{path}", missing=InstanceNotFound):
            self._spec(name)
            target = safe_join(self._layout(name).work, path)
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.fogmesh-tmp")
            tmp.write_bytes(data)
            tmp.chmod(mode & 0o7777)
            tmp.replace(target)

    async def snapshot(self, name: str) -> bytes:
        """A tar of ``work/state/`` (members ``state/...``) after the manifest."""
        with translate_errors(f"snapshot {name}", missing=InstanceNotFound):
            self._spec(name)
            state = self._layout(name).state
            return await asyncio.to_thread(tar_state, state, name)

    async def restore(self, spec: WorkloadSpec, snapshot: bytes) -> InstanceStatus:
        """Create the instance and replace its ``work/state/`` with the snapshot's."""
        with translate_errors(f"restore {spec.name}"):
            with tarfile.open(fileobj=io.BytesIO(snapshot), mode="r") as tar:
                read_manifest(tar, runtime="native")
                status = await self.create(spec)
                state = self._layout(spec.name).state
                if state.exists():
                    await asyncio.to_thread(shutil.rmtree, state)
                extract_safely(tar, state, strip="state/")
            return status

    async def usage(self, name: str) -> Usage:
        """CPU (over 0.5 s) and RSS of the process and its descendants; zeros if not running."""
        with translate_errors(f"usage {name}"):
            proc = alive_process(read_json(self._layout(name).record))
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

    def _shim_config(self, spec: WorkloadSpec, layout: Layout) -> dict[str, object]:
        if spec.artefact is not None:
            argv = ["/bin/sh", spec.artefact.command_script, *spec.command]
        else:
            argv = [str(_resolve(str(spec.executable)) or spec.executable), *spec.command]
        env = {**self.base_env, "HOME": str(layout.work), "FOGMESH_STATE_DIR": str(layout.state)}
        env.update(workload_env(spec, self.node))
        cpu = spec.cpu_limit
        return {
            "argv": argv,
            "cwd": str(layout.work),
            "env": env,
            "log_path": str(layout.log),
            "max_bytes": self.log_max_bytes,
            "backups": self.log_backups,
            "rlimit_as": spec.memory_limit_bytes,
            "nice": 10 if cpu is not None and cpu < 1 else 0,
            "record_path": str(layout.record),
            "exit_path": str(layout.exit),
        }

    def _spawn_shim(self, layout: Layout) -> None:
        with (layout.run / "shim.log").open("ab") as shim_log:
            first = subprocess.Popen(
                [sys.executable, str(_SHIM), str(layout.shim_config)],
                stdin=subprocess.DEVNULL,
                stdout=shim_log,
                stderr=shim_log,
                start_new_session=True,
            )
        first.wait(timeout=60)  # it forks the real shim and exits at once


def _resolve(executable: str) -> str | None:
    if os.path.isabs(executable):  # noqa: PTH117
        return executable if os.access(executable, os.X_OK) else None
    return shutil.which(executable)


async def _wait(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(_POLL)
