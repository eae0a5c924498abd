"""How the native runtime starts an instance: the shim's configuration, and the shim itself."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from fogmesh.agent.runtime.native_isolation import RunAs
from fogmesh.agent.runtime.native_state import Layout
from fogmesh.protocol.workload import WorkloadSpec

__all__ = ["resolve_executable", "shim_config", "spawn_shim"]

_SHIM = Path(__file__).with_name("shim.py")


def resolve_executable(executable: str) -> str | None:
    """The path ``executable`` runs from (``PATH`` searched for a bare name); ``None`` if it
    is not there or not executable."""
    if os.path.isabs(executable):  # noqa: PTH117
        return executable if os.access(executable, os.X_OK) else None
    return shutil.which(executable)


def shim_config(
    spec: WorkloadSpec,
    layout: Layout,
    run_as: RunAs,
    *,
    base_env: Mapping[str, str],
    env: Mapping[str, str],
    cgroup: str | None,
    log_max_bytes: int,
    log_backups: int,
) -> dict[str, object]:
    """What :mod:`.shim` reads from ``run/shim.json``: the program, its environment
    (``base_env``, then ``HOME``, ``FOGMESH_STATE_DIR`` and the user's name, then ``env``, which
    wins), limits, user and files."""
    if spec.artefact is not None:
        argv = ["/bin/sh", spec.artefact.command_script, *spec.command]
    else:
        executable = str(spec.executable)
        argv = [resolve_executable(executable) or executable, *spec.command]
    full_env = {**base_env, "HOME": str(layout.work), "FOGMESH_STATE_DIR": str(layout.state)}
    if run_as.user:
        full_env.update({"USER": run_as.user, "LOGNAME": run_as.user})
    full_env.update(env)
    cpu, memory = spec.cpu_limit, spec.memory_limit_bytes
    return {
        "argv": argv,
        "cwd": str(layout.work),
        "env": full_env,
        "log_path": str(layout.log),
        "max_bytes": log_max_bytes,
        "backups": log_backups,
        # a cgroup bounds memory exactly; without one the address space is bounded
        "rlimit_as": memory if cgroup is None else None,
        "nice": 10 if cpu is not None and cpu < 1 else 0,
        "cgroup": cgroup,
        "uid": run_as.uid,
        "gid": run_as.gid,
        "record_path": str(layout.record),
        "exit_path": str(layout.exit),
    }


def spawn_shim(layout: Layout) -> None:
    """Start ``python -I -S shim.py run/shim.json``; it detaches at once (blocking, briefly)."""
    with (layout.run / "shim.log").open("ab") as shim_log:
        first = subprocess.Popen(
            [sys.executable, "-I", "-S", str(_SHIM), str(layout.shim_config)],
            stdin=subprocess.DEVNULL,
            stdout=shim_log,
            stderr=shim_log,
            start_new_session=True,
        )
    first.wait(timeout=60)  # it forks the real shim and exits at once
