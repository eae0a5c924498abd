"""Tar archives for the runtimes: safe paths, one-file archives, safe extraction, snapshots.

A snapshot is an uncompressed tar whose first member is ``fogmesh-snapshot.json``
(``{"format": 1, "runtime": ..., "workload": ..., "kind": ...}``) followed by the state itself
under a prefix that depends on ``kind``.
"""

from __future__ import annotations

import io
import json
import posixpath
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from fogmesh.agent.runtime.errors import RuntimeFailure, UnsafePath

if TYPE_CHECKING:
    import tarfile

__all__ = [
    "MANIFEST",
    "clean_relative",
    "extract_safely",
    "one_file_tar",
    "read_manifest",
    "safe_join",
    "write_manifest",
]

MANIFEST = "fogmesh-snapshot.json"
"""Name of the manifest member at the start of every snapshot."""


def clean_relative(path: str) -> str:
    """``path`` made relative (a leading ``/`` means the root it is joined to), normalised.

    Raises :class:`UnsafePath` if it is empty, contains NUL or climbs out with ``..``.
    """
    if not path or "\x00" in path:
        raise UnsafePath(f"bad path {path!r}")
    parts = [p for p in PurePosixPath(path).parts if p not in ("/", ".")]
    if not parts or ".." in parts:
        raise UnsafePath(f"path {path!r} escapes its directory")
    return posixpath.join(*parts)


def safe_join(root: Path, path: str) -> Path:
    """``root / path`` after checking that it stays inside ``root``, symlinks resolved."""
    rel = clean_relative(path)
    root_real = root.resolve()
    target = (root_real / rel).resolve()
    if not target.is_relative_to(root_real) or target == root_real:
        raise UnsafePath(f"path {path!r} escapes {root}")
    return target


def one_file_tar(path: str, data: bytes, mode: int) -> bytes:
    """A tar holding ``data`` at relative ``path`` (parents as directories, mode 0755)."""
    import tarfile

    rel = clean_relative(path)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        parents = list(PurePosixPath(rel).parents)[:-1]
        for parent in reversed(parents):
            info = tarfile.TarInfo(str(parent))
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            tar.addfile(info)
        info = tarfile.TarInfo(rel)
        info.size = len(data)
        info.mode = mode & 0o7777
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def extract_safely(tar: tarfile.TarFile, dest: Path, *, strip: str = "") -> None:
    """Extract ``tar`` into ``dest`` with the ``data`` filter (no absolute paths, no ``..``,
    no links out, no devices). With ``strip`` only members under that prefix are extracted,
    the prefix removed."""
    dest.mkdir(parents=True, exist_ok=True)
    members: list[tarfile.TarInfo] = []
    for member in tar.getmembers():
        name = member.name
        if strip:
            if name == strip.rstrip("/") or not name.startswith(strip):
                continue
            name = name[len(strip) :]
        if not name or name == MANIFEST:
            continue
        clean_relative(name)
        member.name = name
        members.append(member)
    import tarfile

    try:
        tar.extractall(dest, members=members, filter="data")
    except tarfile.FilterError as exc:
        raise UnsafePath(f"archive member escapes {dest}: {exc}") from exc


def write_manifest(tar: tarfile.TarFile, manifest: Mapping[str, Any]) -> None:
    """Add the snapshot manifest as the archive's (first) member."""
    import tarfile

    body = json.dumps({"format": 1, **manifest}, sort_keys=True).encode()
    info = tarfile.TarInfo(MANIFEST)
    info.size = len(body)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(body))


def read_manifest(tar: tarfile.TarFile, *, runtime: str) -> dict[str, Any]:
    """The snapshot's manifest; :class:`RuntimeFailure` if missing or for another runtime."""
    try:
        member = tar.getmember(MANIFEST)
    except KeyError:
        raise RuntimeFailure("not a fogmesh snapshot: no manifest") from None
    handle = tar.extractfile(member)
    if handle is None:
        raise RuntimeFailure("not a fogmesh snapshot: manifest is not a file")
    manifest = json.loads(handle.read())
    if not isinstance(manifest, dict) or manifest.get("format") != 1:
        raise RuntimeFailure("unknown snapshot format")
    if manifest.get("runtime") != runtime:
        raise RuntimeFailure(f"snapshot is for runtime {manifest.get('runtime')!r}, not {runtime}")
    return manifest
