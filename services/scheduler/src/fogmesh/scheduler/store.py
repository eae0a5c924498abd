"""The scheduler's own state: apps, their placements and each node's desired generation.

Kept in one JSON file (``state.json`` in the state dir), written atomically (temporary file,
fsync, rename) after every change, so a restart resumes from it; and, one retained record per
app, on the bus (:mod:`fogmesh.protocol.appstore`), so a standby on another machine with a state
dir of its own takes over with every app. Each app's stamp (lease term, change counter) says
which of two copies is the newer; a deleted app keeps its stamp (a tombstone) so an older copy
of it, in a file or on the bus, is not taken for a live app.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from fogmesh.protocol.appstore import AppRecord, PlacementRecord, StoredApp
from fogmesh.protocol.workload import WorkloadSpec

__all__ = [
    "MAX_MOVES",
    "NO_STAMP",
    "AppRecord",
    "MoveRecord",
    "PlacementRecord",
    "Stamp",
    "Store",
    "StoreDoc",
]

MAX_MOVES = 1000
"""The newest moves kept in the store."""

Stamp = tuple[int, int]
"""(lease term, change counter) of one version of an app: the greater is the newer."""
NO_STAMP: Stamp = (-1, -1)
"""The stamp of an app never seen."""


class MoveRecord(BaseModel):
    """One replica re-homed at the migrator's request (``apps/move``)."""

    model_config = ConfigDict(extra="forbid")

    ts: float
    tenant: str
    workload: str
    from_node: str | None = None
    to_node: str
    trigger: str
    snapshot: str | None = None


class StoreDoc(BaseModel):
    """The file's content."""

    model_config = ConfigDict(extra="forbid")

    apps: dict[str, AppRecord] = Field(default_factory=dict, description="key: tenant/app")
    generations: dict[str, int] = Field(default_factory=dict)
    moves: list[MoveRecord] = Field(default_factory=list, description="the newest, oldest first")
    stamps: dict[str, Stamp] = Field(
        default_factory=dict, description="key: tenant/app, also of deleted apps (tombstones)"
    )
    seq: int = Field(default=0, ge=0, description="change counter of this store's writes")


class Store:
    """Loads and saves :class:`StoreDoc` in ``state_dir/state.json``."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "state.json"
        self.doc = StoreDoc()

    @staticmethod
    def key(tenant: str, app: str) -> str:
        """The key of an app in ``doc.apps``."""
        return f"{tenant}/{app}"

    def load(self) -> None:
        """Read the file (an absent file is an empty store)."""
        if self.path.exists():
            self.doc = StoreDoc.model_validate_json(self.path.read_bytes())
        else:
            self.doc = StoreDoc()

    def save(self) -> None:
        """Write the file atomically."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = self.doc.model_dump_json(indent=1).encode()
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".state-", suffix=".json")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            Path(tmp).replace(self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                Path(tmp).unlink()
            raise

    def stamp(self, key: str) -> Stamp:
        """The stamp of the app ``key`` (or its tombstone); ``(-1, -1)`` when unknown."""
        return self.doc.stamps.get(key, NO_STAMP)

    def record(self, key: str, term: int) -> StoredApp:
        """Stamp the app ``key`` as changed now, under lease ``term``, and return its record
        (a tombstone when the app is gone)."""
        self.doc.seq += 1
        self.doc.stamps[key] = (term, self.doc.seq)
        tenant, _, name = key.partition("/")
        return StoredApp(
            tenant=tenant, name=name, term=term, seq=self.doc.seq, app=self.doc.apps.get(key)
        )

    def take(self, rec: StoredApp) -> tuple[bool, AppRecord | None]:
        """Keep ``rec`` when it is newer than the copy here: (whether it was, the app it
        replaced)."""
        key = self.key(rec.tenant, rec.name)
        if rec.stamp <= self.stamp(key):
            return False, None
        old = self.doc.apps.pop(key, None)
        if rec.app is not None:
            self.doc.apps[key] = rec.app
        self.doc.stamps[key] = rec.stamp
        self.doc.seq = max(self.doc.seq, rec.seq)
        return True, old

    def merge_file(self) -> None:
        """Fold the file's content into the store in memory: each app the newer of the two
        copies (a state dir another instance wrote, or this one's own before a restart)."""
        if not self.path.exists():
            return
        disk = StoreDoc.model_validate_json(self.path.read_bytes())
        for key in disk.apps.keys() | disk.stamps.keys():
            # an app the file has without a stamp (a file from before stamps) ranks (0, 0)
            theirs = disk.stamps.get(key, (0, 0) if key in disk.apps else NO_STAMP)
            if theirs > self.stamp(key):
                self.doc.apps.pop(key, None)
                if key in disk.apps:
                    self.doc.apps[key] = disk.apps[key]
                self.doc.stamps[key] = theirs
        gens = self.doc.generations
        for node, gen in disk.generations.items():
            gens[node] = max(gens.get(node, 0), gen)
        self.doc.seq = max(self.doc.seq, disk.seq)
        if len(disk.moves) > len(self.doc.moves):
            self.doc.moves = disk.moves

    def placements(self) -> list[tuple[AppRecord, PlacementRecord]]:
        """Every placement with its app."""
        return [(app, p) for app in self.doc.apps.values() for p in app.placements]

    def specs_for(self, node: str) -> list[WorkloadSpec]:
        """What ``node`` should run, sorted by name."""
        specs = [p.spec for _, p in self.placements() if p.node == node]
        return sorted(specs, key=lambda s: s.name)
