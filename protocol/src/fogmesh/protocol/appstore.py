"""The scheduler's app store on the bus: one retained record per app.

    fm/v1/store/scheduler/{tenant}/{app}     StoredApp (retained): the app, or its tombstone

The leading scheduler publishes an app's record (QoS 1, retained, acknowledged before the API
answers) each time it changes the app, and a tombstone when it deletes it. Every instance,
leader or standby, follows the records, so a standby on another machine, with a state dir of its
own, takes over with every app and placement. Each record carries a stamp, ``(term, seq)``: the
writer's lease term and its store's change counter; an instance keeps the record with the
greatest stamp, so a deposed leader's late write never replaces a new leader's. Only service
accounts may publish or read there (``fm/v1/store`` is outside every other role's grants).
"""

from __future__ import annotations

from pydantic import ConfigDict, Field

from fogmesh.protocol._ids import check_id
from fogmesh.protocol._model import Model
from fogmesh.protocol.apps import AppInfo, AppSummary, PlacementInfo
from fogmesh.protocol.envelope import Envelope
from fogmesh.protocol.manifest import AppManifest
from fogmesh.protocol.topics import ROOT
from fogmesh.protocol.workload import WorkloadSpec

__all__ = [
    "APP_RECORDS_FILTER",
    "AppRecord",
    "PlacementRecord",
    "StoredApp",
    "app_record_topic",
]

APP_RECORDS_FILTER = f"{ROOT}/store/scheduler/+/+"


def app_record_topic(tenant: str, app: str) -> str:
    """``fm/v1/store/scheduler/{tenant}/{app}``."""
    return f"{ROOT}/store/scheduler/{check_id(tenant, what='tenant')}/{check_id(app, what='app')}"


class PlacementRecord(Model):
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


class AppRecord(Model):
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


class StoredApp(Envelope):
    """``store/scheduler/{tenant}/{app}`` (retained): an app as its scheduler last wrote it, or
    its tombstone (``app`` None: deleted)."""

    tenant: str
    name: str = Field(description="the app's name")
    term: int = Field(ge=0, description="the writer's lease term")
    seq: int = Field(ge=0, description="the writer's store change counter")
    app: AppRecord | None = Field(default=None, description="None: the app was deleted")

    @property
    def stamp(self) -> tuple[int, int]:
        """What orders two records of one app: the greater is the newer."""
        return (self.term, self.seq)
