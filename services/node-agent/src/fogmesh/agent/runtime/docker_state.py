"""Pure helpers of the Docker runtime: inspect -> status, stats -> usage, snapshot repacking.

Snapshot kinds (see :mod:`fogmesh.agent.runtime.tarutil` for the manifest):

* ``volumes``: the content of every volume mounted into the container, member ``mounts/{i}/...``
  for the i-th entry of the manifest's ``mounts`` (a list of mount paths); restored by mount
  path, so the new spec needs volumes mounted at the same paths;
* ``rootfs``: a container without volumes: the files it added or changed in its own filesystem
  (``docker diff``), members under ``rootfs/``. Deleted files are not replayed.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from fogmesh.agent.runtime.base import (
    LABEL_SPEC_HASH,
    LABEL_TENANT,
    LABEL_WORKLOAD,
    InstanceState,
    InstanceStatus,
    Usage,
    workload_key,
)
from fogmesh.protocol.workload import RuntimeKind

if TYPE_CHECKING:
    import tarfile

__all__ = [
    "SKIP_CHANGES",
    "copy_member",
    "parse_docker_time",
    "repack",
    "status_from_inspect",
    "subtar",
    "usage_from_stats",
]

SKIP_CHANGES = ("/dev", "/proc", "/sys", "/etc/hostname", "/etc/hosts", "/etc/resolv.conf")
"""Paths ``docker diff`` reports that belong to the engine, not to the workload's state."""

_FRACTION = re.compile(r"\.(\d{6})\d*")
_STATES = {
    "created": InstanceState.CREATED,
    "running": InstanceState.RUNNING,
    "paused": InstanceState.RUNNING,
    "restarting": InstanceState.RUNNING,
    "removing": InstanceState.EXITED,
    "exited": InstanceState.EXITED,
    "dead": InstanceState.EXITED,
}


def parse_docker_time(value: str | None) -> float | None:
    """Unix time of a Docker timestamp (nanosecond RFC 3339); ``None`` for Docker's zero time."""
    if not value or value.startswith("0001-"):
        return None
    text = _FRACTION.sub(lambda m: "." + m.group(1), value).replace("Z", "+00:00")
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def status_from_inspect(name: str, info: Mapping[str, Any]) -> InstanceStatus:
    """An :class:`InstanceStatus` from ``docker inspect``'s JSON of a fogmesh container."""
    state_info: Mapping[str, Any] = info.get("State") or {}
    labels: dict[str, str] = dict((info.get("Config") or {}).get("Labels") or {})
    state = _STATES.get(str(state_info.get("Status", "")), InstanceState.EXITED)
    exit_code = None if state is not InstanceState.EXITED else state_info.get("ExitCode")
    workload, tenant = labels.get(LABEL_WORKLOAD), labels.get(LABEL_TENANT)
    return InstanceStatus(
        name=workload_key(tenant, workload) if workload and tenant else name,
        state=state,
        runtime=RuntimeKind.DOCKER,
        exit_code=int(exit_code) if exit_code is not None else None,
        started_at=parse_docker_time(state_info.get("StartedAt")),
        finished_at=parse_docker_time(state_info.get("FinishedAt")),
        runtime_id=str(info.get("Id", "")),
        spec_hash=labels.get(LABEL_SPEC_HASH, ""),
        labels={k: v for k, v in labels.items() if k.startswith("fogmesh.")},
    )


def usage_from_stats(stats: Mapping[str, Any]) -> Usage:
    """CPU percent (of one core) and memory (usage minus page cache) from one stats sample."""
    cpu = stats.get("cpu_stats") or {}
    pre = stats.get("precpu_stats") or {}
    cpu_delta = (cpu.get("cpu_usage") or {}).get("total_usage", 0) - (
        pre.get("cpu_usage") or {}
    ).get("total_usage", 0)
    system_delta = cpu.get("system_cpu_usage", 0) - pre.get("system_cpu_usage", 0)
    online = cpu.get("online_cpus") or len((cpu.get("cpu_usage") or {}).get("percpu_usage") or [])
    percent = 0.0
    if cpu_delta > 0 and system_delta > 0:
        percent = cpu_delta / system_delta * max(int(online), 1) * 100.0
    memory = stats.get("memory_stats") or {}
    detail = memory.get("stats") or {}
    cache = detail.get("inactive_file", detail.get("total_inactive_file", detail.get("cache", 0)))
    used = max(int(memory.get("usage", 0)) - int(cache or 0), 0)
    return Usage(cpu_percent=percent, memory_bytes=used)


def repack(
    out: tarfile.TarFile, source: tarfile.TarFile, prefix: str, *, strip_first: bool
) -> None:
    """Copy every member of ``source`` into ``out`` under ``prefix``.

    ``strip_first`` drops each name's first component (Docker's archive of ``/data`` names its
    members ``data/...``).
    """
    for member in source.getmembers():
        name = member.name
        if strip_first:
            _, _, name = name.partition("/")
            if not name:
                continue
        copy_member(out, source, member, f"{prefix}{name}")


def copy_member(
    out: tarfile.TarFile, source: tarfile.TarFile, member: tarfile.TarInfo, name: str
) -> None:
    """Add ``member`` of ``source`` to ``out`` as ``name`` (its content too if a file)."""
    handle = source.extractfile(member) if member.isfile() else None
    out.addfile(_renamed(member, name), handle)


def subtar(source: tarfile.TarFile, prefix: str) -> bytes:
    """A new tar of the members of ``source`` under ``prefix``, the prefix removed."""
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as out:
        for member in _under(source.getmembers(), prefix):
            copy_member(out, source, member, member.name[len(prefix) :])
    return buf.getvalue()


def _under(members: Iterable[tarfile.TarInfo], prefix: str) -> Iterable[tarfile.TarInfo]:
    return (m for m in members if m.name.startswith(prefix) and len(m.name) > len(prefix))


def _renamed(member: tarfile.TarInfo, name: str) -> tarfile.TarInfo:
    import tarfile

    copy = tarfile.TarInfo(name)
    copy.size = member.size if member.isfile() else 0
    copy.mode = member.mode
    copy.type = member.type
    copy.linkname = member.linkname
    copy.mtime = member.mtime
    copy.uid, copy.gid = member.uid, member.gid
    copy.uname, copy.gname = member.uname, member.gname
    return copy
