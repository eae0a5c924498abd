"""Files in and out of a workload's container through the engine's archive endpoints: one
file read, a snapshot taken, a snapshot loaded (the snapshot kinds are described in
:mod:`fogmesh.agent.runtime.docker_state`).

``tarfile`` is imported by the first snapshot, not by this module: an idle agent has none.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from fogmesh.agent.runtime.docker_state import SKIP_CHANGES, copy_member, repack, subtar
from fogmesh.agent.runtime.engine import Engine, is_regular_file
from fogmesh.agent.runtime.errors import RuntimeFailure, UnsafePath
from fogmesh.agent.runtime.tarutil import write_manifest
from fogmesh.protocol.workload import WorkloadSpec

if TYPE_CHECKING:
    import tarfile

__all__ = ["TAR_OVERHEAD", "load_snapshot", "read_file", "take_snapshot"]

# The Docker runtime's own logger: these steps are part of its restore.
log = logging.getLogger("fogmesh.agent.runtime.docker")

TAR_OVERHEAD = 64 * 1024
"""What a tar of one file may hold beyond the file: its headers, padding and end blocks."""


async def read_file(docker: Engine, container: str, path: str, limit: int) -> bytes:
    """The regular file at absolute ``path`` in ``container`` (``GET /archive``), at most
    ``limit`` bytes: :class:`UnsafePath` if it is not a regular file, :class:`RuntimeFailure`
    if it is larger."""

    def check(stat: dict[str, Any]) -> None:  # before any of the tar is read
        if stat and not is_regular_file(stat):
            raise UnsafePath(f"{path} is not a regular file")
        if int(stat.get("size", 0)) > limit:
            raise RuntimeFailure(f"{path} is larger than {limit} bytes")

    async with docker.get_archive(
        container, path, check=check, max_bytes=limit + TAR_OVERHEAD
    ) as archive:
        member = archive.next()
        if member is None or not member.isfile():
            raise UnsafePath(f"{path} is not a regular file")
        if member.size > limit:
            raise RuntimeFailure(f"{path} is larger than {limit} bytes")
        handle = archive.extractfile(member)
        return b"" if handle is None else handle.read()


async def take_snapshot(docker: Engine, container: str, key: str) -> bytes:
    """A tar of ``container``'s volumes' content (or, without volumes, of its changed files),
    with the manifest of workload ``key``."""
    info = await docker.inspect_container(container)
    mounts = [m["Destination"] for m in info.get("Mounts") or [] if m.get("Type") == "volume"]
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as out:
        kind = "volumes" if mounts else "rootfs"
        write_manifest(out, {"runtime": "docker", "workload": key, "kind": kind, "mounts": mounts})
        for index, path in enumerate(mounts):
            async with docker.get_archive(container, path) as archive:
                repack(out, archive, f"mounts/{index}/", strip_first=True)
        if not mounts:
            await _snapshot_changes(docker, container, out)
    return buf.getvalue()


async def _snapshot_changes(docker: Engine, container: str, out: tarfile.TarFile) -> None:
    changes = await docker.changes(container)
    for change in changes:
        path = str(change.get("Path", ""))
        if change.get("Kind") == 2 or not path or path.startswith(SKIP_CHANGES):
            continue
        async with docker.get_archive(container, path) as archive:
            # a directory's archive holds its whole tree: keep only its own entry, since
            # every changed file below it is a change of its own
            top = archive.next()
            if top is not None:
                copy_member(out, archive, top, f"rootfs/{path.lstrip('/')}")


async def load_snapshot(
    docker: Engine,
    container: str,
    spec: WorkloadSpec,
    source: tarfile.TarFile,
    manifest: Mapping[str, Any],
) -> None:
    """Put the content of snapshot ``source`` (its ``manifest`` read) into ``container``, made
    for ``spec``: a ``rootfs`` snapshot's files at ``/``, each volume's content at its mount
    path (skipped, with a warning, where the new spec has no volume)."""
    if manifest.get("kind") == "rootfs":
        await docker.put_archive(container, "/", subtar(source, "rootfs/"))
    for index, path in enumerate(manifest.get("mounts") or []):
        if path not in {v.mount_path for v in spec.volumes}:
            log.warning("restore %s: no volume at %s in the new spec", spec.name, path)
            continue
        await docker.put_archive(container, path, subtar(source, f"mounts/{index}/"))
