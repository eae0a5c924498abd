"""The partition tests' native workloads: a sleeping ``python -c`` whose code ends with a mark of
the test's own, and finding the live processes that carry it."""

from __future__ import annotations

from dataclasses import dataclass

import psutil

__all__ = ["Workload", "marked", "sleeper"]


def sleeper(mark: str) -> list[str]:
    """The ``command`` of a native component that sleeps for an hour, marked with ``mark``."""
    return ["-c", f"import time; time.sleep(3600)  # {mark}"]


@dataclass(frozen=True)
class Workload:
    """One live workload process and what its agent's environment says of it."""

    pid: int
    name: str
    """``FOGMESH_WORKLOAD`` ("?" if unset)."""
    node: str
    """``FOGMESH_NODE``: the node whose agent started it ("?" if unset)."""


def marked(mark: str) -> list[Workload]:
    """The live (not zombie) ``-c`` processes with an argument ending in ``mark``; one that
    ends while it is looked at is left out."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        cmdline = proc.info["cmdline"] or []
        if proc.info["status"] == psutil.STATUS_ZOMBIE or "-c" not in cmdline:
            continue
        if any(part.endswith(mark) for part in cmdline):
            try:
                env = proc.environ()
            except psutil.Error:
                continue
            workload = env.get("FOGMESH_WORKLOAD", "?")
            found.append(Workload(proc.info["pid"], workload, env.get("FOGMESH_NODE", "?")))
    return found
