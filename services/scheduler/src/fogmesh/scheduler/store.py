"""The scheduler's own state: apps, their placements and each node's desired generation.

Kept in one JSON file (``state.json`` in the state dir), written atomically (temporary file,
fsync, rename) after every change, so a restart or a standby taking over resumes from it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from fogmesh.protocol.apps import AppInfo, AppSummary, PlacementInfo
from fogmesh.protocol.manifest import AppManifest
from fogmesh.protocol.workload import WorkloadSpec

__all__ = ["MAX_MOVES", "AppRecord", "MoveRecord", "PlacementRecord", "Store", "StoreDoc"]

MAX_MOVES = 1000
"""The newest moves kept in the store."""


class PlacementRecord(BaseModel):
    """One workload of an app: its spec and its node (None while pending)."""

    model_config = ConfigDict(extra="forbid")

    spec: WorkloadSpec
    node: str | None = None
    revision: int = Field(default=1, ge=1)
    retiring: bool = False
    retire_by: float = 0.0

    @property
    def name(self) -> str:
        """The workload name."""
        return self.spec.name

    def info(self) -> PlacementInfo:
        """The wire form."""
        return PlacementInfo(
            workload=self.spec.name,
            component=self.spec.component,
            replica=self.spec.replica,
            node=self.node,
            version=self.spec.app_version,
            retiring=self.retiring,
        )


class AppRecord(BaseModel):
    """One deployed app."""

    model_config = ConfigDict(extra="forbid")

    tenant: str
    manifest: AppManifest
    revision: int = Field(default=1, ge=1, description="grows with each update")
    placements: list[PlacementRecord] = Field(default_factory=list)
    created_at: float = 0.0
    updated_at: float = 0.0

    def info(self) -> AppInfo:
        """The wire form, placements sorted by workload name (retiring last)."""
        ordered = sorted(self.placements, key=lambda p: (p.retiring, p.spec.name))
        return AppInfo(
            name=self.manifest.name,
            tenant=self.tenant,
            version=self.manifest.version,
            manifest=self.manifest,
            placements=[p.info() for p in ordered],
            created_at=self.created_at,
            updated_at=self.updated_at,
        )

    def summary(self) -> AppSummary:
        """The list form."""
        active = [p for p in self.placements if not p.retiring]
        return AppSummary(
            name=self.manifest.name,
            tenant=self.tenant,
            version=self.manifest.version,
            workloads=len(active),
            pending=sum(1 for p in active if p.node is None),
        )


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

    def placements(self) -> list[tuple[AppRecord, PlacementRecord]]:
        """Every placement with its app."""
        return [(app, p) for app in self.doc.apps.values() for p in app.placements]

    def specs_for(self, node: str) -> list[WorkloadSpec]:
        """What ``node`` should run, sorted by name."""
        specs = [p.spec for _, p in self.placements() if p.node == node]
        return sorted(specs, key=lambda s: s.name)
