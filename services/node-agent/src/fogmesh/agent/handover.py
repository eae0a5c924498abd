"""Staged snapshots of a migration, on disk under ``{state_dir}/handover/``.

A source agent writes a frozen workload's snapshot to ``out/{snapshot}`` and serves it in
chunks; a peer agent appends the chunks it receives to ``in/{key}.part`` (checking each chunk's
sha256, accepting only the offset it needs next, so a transfer resumes where it stopped) and,
once the whole file's sha256 matches, renames it to ``in/{key}.tar``. The reconciler restores
from that file when it creates the workload, then deletes it. Neither side holds more than one
chunk in memory.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path

from fogmesh.protocol import FogmeshError

__all__ = ["ChunkRefused", "Handover"]

_HASH_BLOCK = 1024 * 1024


class ChunkRefused(FogmeshError):
    """A chunk that does not match its checksum, or a snapshot that does not match its own."""


def _safe(name: str) -> str:
    # keys are "{tenant}/{name}" (validated ids); snapshot ids are ours (hex)
    return name.replace("/", "__")


def file_sha256(path: Path) -> str:
    """The sha256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(_HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


class Handover:
    """The staging directories of one agent."""

    def __init__(self, root: Path) -> None:
        self.outgoing = root / "out"
        self.incoming = root / "in"

    # -- the source ---------------------------------------------------------------------------

    def stage_out(self, key: str, data: bytes) -> tuple[str, int, str]:
        """Write ``data`` (a snapshot of workload ``key``); returns (id, size, sha256)."""
        snapshot = f"{_safe(key)}.{secrets.token_hex(6)}"
        # atomic, not durable (no fsync: it is on a move's critical path): the workload's own
        # files stay where they are until the peer runs it, so a crash loses only this copy
        # and the move fails; the peer syncs what it receives
        self.outgoing.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.outgoing / f".{snapshot}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        tmp.replace(self.outgoing / snapshot)
        return snapshot, len(data), hashlib.sha256(data).hexdigest()

    @staticmethod
    def is_snapshot_of(key: str, snapshot: str) -> bool:
        """Whether ``snapshot`` is an id :meth:`stage_out` gave for workload ``key``."""
        return snapshot.startswith(f"{_safe(key)}.") and "/" not in snapshot

    def read_chunk(self, snapshot: str, offset: int, length: int) -> bytes:
        """``length`` bytes at ``offset`` (fewer at the end); ``FileNotFoundError`` if gone."""
        path = self.outgoing / _safe(snapshot)
        with path.open("rb") as fh:
            fh.seek(offset)
            return fh.read(length)

    def drop_out(self, key: str) -> None:
        """Forget every outgoing snapshot of workload ``key``."""
        prefix = f"{_safe(key)}."
        if self.outgoing.is_dir():
            for path in self.outgoing.iterdir():
                if path.name.startswith(prefix):
                    path.unlink(missing_ok=True)

    # -- the peer -----------------------------------------------------------------------------

    def _part(self, key: str, snapshot: str) -> Path:
        return self.incoming / f"{_safe(key)}.{_safe(snapshot)}.part"

    def ready_path(self, key: str) -> Path:
        """Where the complete snapshot of workload ``key`` waits for its restore."""
        return self.incoming / f"{_safe(key)}.tar"

    def put_chunk(
        self, key: str, snapshot: str, offset: int, data: bytes, sha256: str | None
    ) -> int:
        """Append ``data`` if ``offset`` is the next one needed; returns the next offset."""
        part = self._part(key, snapshot)
        have = part.stat().st_size if part.exists() else 0
        if not data or offset != have:
            return have
        if sha256 is None or hashlib.sha256(data).hexdigest() != sha256:
            raise ChunkRefused(f"chunk at {offset} does not match its sha256")
        part.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # no fsync per chunk: the whole file is synced and its sha256 checked once complete, so
        # a chunk lost in a crash is caught there and the transfer starts again
        fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        return have + len(data)

    def complete(self, key: str, snapshot: str, size: int, sha256: str) -> bool:
        """Whether the whole snapshot is in; once its sha256 matches it becomes the ready file
        (a mismatch discards it, so the sender starts again from 0)."""
        part = self._part(key, snapshot)
        if not part.exists() or part.stat().st_size < size:
            # done already only if the ready file is this snapshot (a replica's next copy
            # comes under a new snapshot id while the older one still waits there)
            ready = self.ready_path(key)
            return ready.exists() and not part.exists() and file_sha256(ready) == sha256
        with part.open("rb+") as fh:
            os.fsync(fh.fileno())
        if file_sha256(part) != sha256:
            part.unlink(missing_ok=True)
            raise ChunkRefused("the snapshot does not match its sha256; send it again")
        part.replace(self.ready_path(key))
        return True

    def take_ready(self, key: str) -> bytes | None:
        """The complete snapshot of ``key``, if one waits (the file is kept until
        :meth:`drop_ready`, so a failed restore can be tried again)."""
        path = self.ready_path(key)
        return path.read_bytes() if path.exists() else None

    def drop_ready(self, key: str) -> None:
        """Forget the staged snapshot of ``key`` (it was restored)."""
        self.ready_path(key).unlink(missing_ok=True)

    def drop_all(self, key: str) -> int:
        """Forget every staged file of ``key``: the ready snapshot, partial transfers and the
        outgoing copies (the workload was deleted or deployed anew); returns how many."""
        prefix = f"{_safe(key)}."
        gone = 0
        for folder in (self.incoming, self.outgoing):
            if folder.is_dir():
                for path in folder.iterdir():
                    if path.name.startswith(prefix):
                        path.unlink(missing_ok=True)
                        gone += 1
        return gone
