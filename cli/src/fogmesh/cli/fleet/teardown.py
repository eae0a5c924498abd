"""Leave nothing behind: containers and native workload processes of the fleet's nodes."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from pathlib import Path

import psutil

__all__ = ["remove_leftovers"]


def _docker_leftovers(nodes: list[str]) -> int:
    if shutil.which("docker") is None:
        return 0
    removed = 0
    for node in nodes:
        try:
            listed = subprocess.run(
                ["docker", "ps", "-aq", "--filter", f"label=fogmesh.node={node}"],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            return removed
        ids = listed.stdout.split()
        if ids:
            subprocess.run(
                ["docker", "rm", "-f", "-v", *ids], capture_output=True, timeout=60, check=False
            )
            removed += len(ids)
    return removed


def _native_leftovers(state_dir: Path) -> int:
    """Kill processes running from inside the fleet's state directory (workloads, shims)."""
    root = str(state_dir.resolve())
    me = psutil.Process()
    spared = {me.pid, *(p.pid for p in me.parents())}
    victims: list[psutil.Process] = []
    for proc in psutil.process_iter(["pid", "cwd", "cmdline"]):
        if proc.pid in spared:
            continue
        with contextlib.suppress(psutil.Error):
            cwd = proc.info.get("cwd") or ""
            cmdline = " ".join(proc.info.get("cmdline") or [])
            if cwd.startswith(root) or root in cmdline:
                victims.append(proc)
    for proc in victims:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(victims, timeout=5)
    return len(victims)


def remove_leftovers(nodes: list[str], state_dir: Path) -> dict[str, int]:
    """Remove what the fleet's agents left running; return counts by kind."""
    return {
        "containers": _docker_leftovers(nodes),
        "processes": _native_leftovers(state_dir),
    }
