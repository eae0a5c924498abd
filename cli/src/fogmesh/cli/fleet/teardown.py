"""Leave nothing behind: containers and native workload processes of the fleet's nodes."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from pathlib import Path

import psutil

__all__ = ["fleet_containers", "fleet_processes", "kill_node_workloads", "remove_leftovers"]


def fleet_containers(fleet_id: str, node: str | None = None) -> list[str]:
    """Ids of the containers labelled with this fleet's id (and ``node``'s, if given)."""
    if shutil.which("docker") is None:
        return []
    labels = [f"label=fogmesh.fleet={fleet_id}"]
    if node is not None:
        labels.append(f"label=fogmesh.node={node}")
    argv = ["docker", "ps", "-aq"]
    for label in labels:
        argv += ["--filter", label]
    try:
        listed = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return listed.stdout.split()


def _docker_leftovers(fleet_id: str) -> int:
    """Remove the containers labelled with this fleet's id (and only those)."""
    ids = fleet_containers(fleet_id)
    if ids:
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            subprocess.run(
                ["docker", "rm", "-f", "-v", *ids], capture_output=True, timeout=120, check=False
            )
    return len(ids)


def _is_within(path: str, root: Path) -> bool:
    return bool(path) and Path(path).is_absolute() and Path(path).is_relative_to(root)


def fleet_processes(
    fleet_id: str, state_dir: Path, node: str | None = None
) -> list[psutil.Process]:
    """What this fleet started: processes carrying its id in their environment, or running
    from inside its state directory (workloads, shims). With ``node``: only that node's
    workloads and shims (its ``FOGMESH_NODE``, or its agent's state directory in the working
    directory or the command line), never the agent itself or this process's ancestors."""
    root = state_dir.resolve()
    mine = root / "agents" / node if node is not None else root
    me = psutil.Process()
    spared = {me.pid, *(p.pid for p in me.parents())}
    found: list[psutil.Process] = []
    for proc in psutil.process_iter(["pid", "cwd", "cmdline"]):
        if proc.pid in spared:
            continue
        with contextlib.suppress(psutil.Error):
            cwd = proc.info.get("cwd") or ""
            env = proc.environ()
            marked = env.get("FOGMESH_FLEET") == fleet_id
            if node is None:
                if marked or _is_within(cwd, root):
                    found.append(proc)
                continue
            named = marked and env.get("FOGMESH_NODE") == node
            args = proc.info.get("cmdline") or []
            if named or _is_within(cwd, mine) or any(_is_within(a, mine) for a in args):
                found.append(proc)
    return found


def _kill(victims: list[psutil.Process]) -> int:
    for proc in victims:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(victims, timeout=5)
    return len(victims)


def _native_leftovers(state_dir: Path, fleet_id: str) -> int:
    """Kill what this fleet started and left running."""
    return _kill(fleet_processes(fleet_id, state_dir))


def kill_node_workloads(fleet_id: str, state_dir: Path, node: str) -> dict[str, int]:
    """SIGKILL ``node``'s workloads as a power cut would: its native workloads and shims, and
    its containers (``docker kill``, left in place for the agent to find); counts by kind."""
    ids = fleet_containers(fleet_id, node)
    if ids:
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            subprocess.run(["docker", "kill", *ids], capture_output=True, timeout=60, check=False)
    return {"containers": len(ids), "processes": _kill(fleet_processes(fleet_id, state_dir, node))}


def remove_leftovers(fleet_id: str, state_dir: Path) -> dict[str, int]:
    """Remove what the fleet's agents left running; return counts by kind."""
    return {
        "containers": _docker_leftovers(fleet_id),
        "processes": _native_leftovers(state_dir, fleet_id),
    }
