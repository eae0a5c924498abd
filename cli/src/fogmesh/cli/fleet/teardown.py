"""Leave nothing behind: containers and native workload processes of the fleet's nodes."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from pathlib import Path

import psutil

__all__ = ["remove_leftovers"]


def _docker_leftovers(fleet_id: str) -> int:
    """Remove the containers labelled with this fleet's id (and only those)."""
    if shutil.which("docker") is None:
        return 0
    try:
        listed = subprocess.run(
            ["docker", "ps", "-aq", "--filter", f"label=fogmesh.fleet={fleet_id}"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        ids = listed.stdout.split()
        if ids:
            subprocess.run(
                ["docker", "rm", "-f", "-v", *ids], capture_output=True, timeout=120, check=False
            )
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return len(ids)


def _native_leftovers(state_dir: Path, fleet_id: str) -> int:
    """Kill what this fleet started and left running: processes carrying its id in their
    environment, or running from inside its state directory (workloads, shims)."""
    root = state_dir.resolve()
    me = psutil.Process()
    spared = {me.pid, *(p.pid for p in me.parents())}
    victims: list[psutil.Process] = []
    for proc in psutil.process_iter(["pid", "cwd"]):
        if proc.pid in spared:
            continue
        with contextlib.suppress(psutil.Error):
            cwd = proc.info.get("cwd") or ""
            marked = proc.environ().get("FOGMESH_FLEET") == fleet_id
            if marked or (cwd and Path(cwd).is_relative_to(root)):
                victims.append(proc)
    for proc in victims:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(victims, timeout=5)
    return len(victims)


def remove_leftovers(fleet_id: str, state_dir: Path) -> dict[str, int]:
    """Remove what the fleet's agents left running; return counts by kind."""
    return {
        "containers": _docker_leftovers(fleet_id),
        "processes": _native_leftovers(state_dir, fleet_id),
    }
