"""Content-addressed blobs on disk, who holds each, and uploads in progress.

Layout under ``root``::

    blobs/{sha256}              complete, verified artefacts (read-only once there)
    uploads/{tenant}/{sha256}   an upload in progress: its bytes so far (the file's length is
                                the offset the upload needs next, so a restart resumes it)
    index.json                  {sha256: {size, kind, name, owners: {tenant: created}}}

One blob serves every tenant who pushed the same bytes, but each tenant holds it by its own
push: a tenant is never told about, nor given, an artefact it did not upload itself.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fogmesh.protocol.artefacts import ArtefactKind

__all__ = ["BlobStore", "Entry", "file_digest"]

_READ = 1 << 20


def file_digest(path: Path) -> str:
    """The sha256 (hex) of a file's content."""
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while block := source.read(_READ):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class Entry:
    """One stored blob and the tenants that hold it (tenant -> unix time of its push)."""

    size: int
    kind: ArtefactKind = ArtefactKind.FILE
    name: str = ""
    owners: dict[str, float] = field(default_factory=dict)

    def dump(self) -> dict[str, Any]:
        """The index's JSON form."""
        return {
            "size": self.size,
            "kind": self.kind.value,
            "name": self.name,
            "owners": self.owners,
        }

    @classmethod
    def load(cls, raw: dict[str, Any]) -> Entry:
        """From the index's JSON form."""
        return cls(
            size=int(raw["size"]),
            kind=ArtefactKind(raw.get("kind", "file")),
            name=str(raw.get("name", "")),
            owners={str(k): float(v) for k, v in dict(raw.get("owners", {})).items()},
        )


class BlobStore:
    """The blobs, the index of who holds them and the uploads under ``root``.

    Not thread-safe; one asyncio service owns it (file work is small per call: one chunk).
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.blobs = self.root / "blobs"
        self.uploads = self.root / "uploads"
        self.blobs.mkdir(parents=True, exist_ok=True)
        self.uploads.mkdir(parents=True, exist_ok=True)
        self._index_path = self.root / "index.json"
        self.index: dict[str, Entry] = {}
        if self._index_path.exists():
            raw = json.loads(self._index_path.read_text())
            self.index = {k: Entry.load(v) for k, v in raw.items()}

    # -- blobs --------------------------------------------------------------------------------

    def blob(self, digest: str) -> Path:
        """Where the blob of ``digest`` is (or would be)."""
        return self.blobs / digest

    def has(self, digest: str) -> bool:
        """Whether the complete blob is here."""
        return self.blob(digest).is_file()

    def held_by(self, digest: str, tenant: str) -> Entry | None:
        """The entry of ``digest`` if ``tenant`` holds it (and its bytes are here)."""
        entry = self.index.get(digest)
        if entry is None or tenant not in entry.owners or not self.has(digest):
            return None
        return entry

    def read(self, digest: str, offset: int, length: int) -> bytes:
        """``length`` bytes of a blob at ``offset`` (fewer at its end)."""
        with self.blob(digest).open("rb") as source:
            source.seek(offset)
            return source.read(length)

    def claim(self, digest: str, tenant: str, entry: Entry) -> Entry:
        """Record that ``tenant`` holds ``digest`` (whose blob is here); the entry."""
        held = self.index.setdefault(digest, entry)
        held.owners.setdefault(tenant, time.time())
        self._save()
        return held

    def release(self, digest: str, tenant: str) -> bool:
        """Drop ``tenant``'s hold on ``digest``; the blob goes when nobody holds it. Whether the
        tenant held it."""
        entry = self.index.get(digest)
        if entry is None or entry.owners.pop(tenant, None) is None:
            return False
        if not entry.owners:
            del self.index[digest]
            self.blob(digest).unlink(missing_ok=True)
        self._save()
        return True

    def forget(self, digest: str) -> None:
        """Drop a blob and its entry whoever holds it (a cache evicting)."""
        self.index.pop(digest, None)
        self.blob(digest).unlink(missing_ok=True)
        self._save()

    def of_tenant(self, tenant: str) -> list[tuple[str, Entry]]:
        """The tenant's blobs, newest push first."""
        mine = [(k, e) for k, e in self.index.items() if tenant in e.owners]
        return sorted(mine, key=lambda item: -item[1].owners[tenant])

    def used(self, tenant: str) -> int:
        """Bytes the tenant's blobs and uploads take (the quota's measure)."""
        held = sum(e.size for _, e in self.of_tenant(tenant))
        return held + sum(size for _, size in self.uploads_of(tenant))

    def add_file(self, digest: str, source: Path) -> None:
        """Move a verified file in as the blob of ``digest`` (kept if already there)."""
        target = self.blob(digest)
        if target.exists():
            source.unlink(missing_ok=True)
            return
        source.chmod(0o444)
        source.replace(target)

    # -- uploads ------------------------------------------------------------------------------

    def upload(self, tenant: str, digest: str) -> Path:
        """The file of ``tenant``'s upload of ``digest``."""
        return self.uploads / tenant / digest

    def uploads_of(self, tenant: str) -> list[tuple[str, int]]:
        """(digest, declared size) of the tenant's uploads in progress."""
        folder = self.uploads / tenant
        if not folder.is_dir():
            return []
        found = []
        for path in folder.iterdir():
            if path.suffix == ".size":
                found.append((path.stem, int(path.read_text() or 0)))
        return found

    def upload_offset(self, tenant: str, digest: str, size: int) -> int:
        """Start (or find) ``tenant``'s upload of ``digest``; the offset it needs next."""
        path = self.upload(tenant, digest)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
        path.with_suffix(".size").write_text(str(size))
        return path.stat().st_size

    def append(self, tenant: str, digest: str, data: bytes) -> int:
        """Append a checked chunk to the upload; the new offset."""
        path = self.upload(tenant, digest)
        with path.open("ab") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        return path.stat().st_size

    def expire_uploads(self, max_age: float) -> int:
        """Drop uploads untouched for ``max_age`` seconds; how many went."""
        cutoff = time.time() - max_age
        dropped = 0
        for folder in self.uploads.iterdir() if self.uploads.is_dir() else []:
            for tenant_digest, _size in self.uploads_of(folder.name):
                path = self.upload(folder.name, tenant_digest)
                if not path.exists() or path.stat().st_mtime < cutoff:
                    self.drop_upload(folder.name, tenant_digest)
                    dropped += 1
        return dropped

    def drop_upload(self, tenant: str, digest: str) -> None:
        """Forget an upload (finished or failed)."""
        path = self.upload(tenant, digest)
        path.unlink(missing_ok=True)
        path.with_suffix(".size").unlink(missing_ok=True)

    def _save(self) -> None:
        tmp = self._index_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({k: e.dump() for k, e in self.index.items()}, sort_keys=True))
        tmp.replace(self._index_path)
