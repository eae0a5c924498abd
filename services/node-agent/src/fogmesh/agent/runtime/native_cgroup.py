"""cgroup v2 leaves that hold native workloads to their CPU and memory limits.

Where ``/sys/fs/cgroup`` is the unified (v2) hierarchy and the agent may write it, every native
instance gets its own leaf under ``native_cgroup_parent`` (default ``/sys/fs/cgroup/fogmesh``):
``memory.max`` = the component's memory limit, ``memory.swap.max`` = 0 (the limit is not
dodged by swapping), ``cpu.max`` = its CPU limit (quota per 100 ms period). The shim moves the
workload into the leaf before it drops privileges, so the workload and all its children stay
there. The parent's ``cgroup.subtree_control`` gets ``+cpu +memory`` (the parent must not hold
processes itself, cgroup v2's "no internal processes" rule; the agent never joins it).

Elsewhere (cgroup v1 or a hybrid layout, a read-only ``/sys/fs/cgroup``, controllers not
delegated) :meth:`CgroupParent.open` says why and returns ``None``; memory is then bounded by
``RLIMIT_AS`` alone (which the shim always sets) and CPU only by niceness.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import structlog

__all__ = ["CPU_PERIOD_US", "CgroupParent", "cgroup_fs_type"]

log = structlog.get_logger("fogmesh.agent.runtime.native")

CPU_PERIOD_US = 100_000
_NEEDED = ("cpu", "memory")


def cgroup_fs_type(mount: Path = Path("/sys/fs/cgroup")) -> str:
    """The file system type mounted at ``mount`` (``cgroup2`` for the unified hierarchy), from
    ``/proc/self/mountinfo``; ``""`` if nothing is mounted there."""
    found = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            fields = line.split(" ")
            if len(fields) > 4 and fields[4] == str(mount) and " - " in line:
                found = line.split(" - ", 1)[1].split(" ", 1)[0]  # the last mount wins
    return found


@dataclass(frozen=True)
class CgroupParent:
    """The cgroup v2 directory under which the agent makes one leaf per native instance."""

    path: Path

    @classmethod
    def open(cls, path: Path, *, mount: Path = Path("/sys/fs/cgroup")) -> CgroupParent | None:
        """The parent at ``path`` with the cpu and memory controllers enabled for its children,
        made if missing; ``None`` (and a log line saying why) where that is not possible."""
        why = cls._unusable(path, mount)
        if why:
            log.info("native workloads get no cgroup; memory is bounded by RLIMIT_AS", why=why)
            return None
        return cls(path)

    @staticmethod
    def _unusable(path: Path, mount: Path) -> str:
        kind = cgroup_fs_type(mount)
        if kind != "cgroup2":
            return f"{mount} is {kind or 'not mounted'}, not the cgroup v2 unified hierarchy"
        if not path.is_relative_to(mount) or path == mount:
            return f"{path} is not below {mount}"
        try:
            available = (path.parent / "cgroup.controllers").read_text().split()
            missing = [c for c in _NEEDED if c not in available]
            if missing:
                return f"controllers {missing} are not available in {path.parent}"
            _enable(path.parent)
            path.mkdir(exist_ok=True)
            _enable(path)
        except OSError as exc:
            return f"cannot set up {path}: {exc}"
        return ""

    def leaf(self, key: str, *, cpu: float | None, memory: int | None) -> Path:
        """Make (or reuse) the leaf of instance ``key`` with these limits; its path."""
        leaf = self.path / _leaf_name(key)
        leaf.mkdir(exist_ok=True)
        (leaf / "memory.max").write_text(f"{memory}\n" if memory else "max\n")
        with contextlib.suppress(OSError):  # no swap accounting on this kernel
            (leaf / "memory.swap.max").write_text("0\n" if memory else "max\n")
        quota = f"{max(int(cpu * CPU_PERIOD_US), 1000)}" if cpu else "max"
        (leaf / "cpu.max").write_text(f"{quota} {CPU_PERIOD_US}\n")
        return leaf

    def remove(self, key: str) -> None:
        """Remove the leaf of ``key`` (it must hold no process any more); a no-op if absent."""
        with contextlib.suppress(FileNotFoundError, OSError):
            (self.path / _leaf_name(key)).rmdir()


def _enable(folder: Path) -> None:
    control = folder / "cgroup.subtree_control"
    enabled = control.read_text().split()
    wanted = [f"+{c}" for c in _NEEDED if c not in enabled]
    if wanted:
        control.write_text(" ".join(wanted) + "\n")


def _leaf_name(key: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9_.-]", "_", key)[:80].lstrip(".")
    return f"{cleaned}-{hashlib.sha256(key.encode()).hexdigest()[:8]}"
