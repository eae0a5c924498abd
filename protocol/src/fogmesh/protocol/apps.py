"""The apps API: requests on ``fm/v1/api/{tenant}/apps/{action}`` and their replies.

Actions: ``deploy`` (:class:`DeployApp`), ``update`` (:class:`UpdateApp`), ``scale``
(:class:`ScaleApp`), ``delete`` (:class:`DeleteApp`), ``list`` (:class:`ListApps`) and ``get``
(:class:`GetApp`). The tenant is the one in the topic; a tenant sees and touches only its own
apps. Deploy, update, scale and get answer an :class:`AppReply` with the placements; list
answers an :class:`AppListReply`; delete an :class:`AppDeletedReply`.

A request that cannot be placed is answered with an ``ErrorReply`` of code ``unschedulable``
whose ``error.details`` is an :class:`Unschedulable` dumped to JSON: the reason each node was
refused, for the first component replica that found no node.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import ConfigDict, Field

from fogmesh.protocol._ids import Ident
from fogmesh.protocol._model import Model
from fogmesh.protocol.envelope import Reply, Request
from fogmesh.protocol.manifest import AppManifest

__all__ = [
    "APPS_RESOURCE",
    "AppAction",
    "AppDeletedReply",
    "AppInfo",
    "AppListReply",
    "AppReply",
    "AppSummary",
    "DeleteApp",
    "DeployApp",
    "GetApp",
    "ListApps",
    "PlacementInfo",
    "ScaleApp",
    "Unschedulable",
    "UpdateApp",
]

APPS_RESOURCE = "apps"
"""The ``{resource}`` level of the apps API topics."""


class AppAction(StrEnum):
    """The ``{action}`` level of ``fm/v1/api/{tenant}/apps/{action}``."""

    DEPLOY = "deploy"
    UPDATE = "update"
    SCALE = "scale"
    DELETE = "delete"
    LIST = "list"
    GET = "get"
    MOVE = "move"  # fogmesh.protocol.migration.MoveWorkload -> MoveReply (the migrator's)


class DeployApp(Request):
    """Deploy a new app; ``conflict`` if the tenant already has an app of that name."""

    manifest: AppManifest


class UpdateApp(Request):
    """Replace an app's manifest; the new version starts before the old stops where it fits."""

    manifest: AppManifest


class ScaleApp(Request):
    """Set one component's replica count."""

    app: Ident
    component: Ident
    replicas: int = Field(ge=0, le=1000)


class DeleteApp(Request):
    """Remove an app and all its workloads."""

    app: Ident


class ListApps(Request):
    """The tenant's apps."""


class GetApp(Request):
    """One app, with its manifest and placements."""

    app: Ident


class PlacementInfo(Model):
    """Where one workload runs (``node`` is None while it waits for a node)."""

    model_config = ConfigDict(extra="forbid")

    workload: Ident = Field(description="{app}-{component}-{replica}")
    component: Ident
    replica: int = Field(ge=0)
    node: Ident | None = None
    version: str = Field(default="1", max_length=64)
    retiring: bool = Field(default=False, description="old version kept until the new one runs")
    not_running_s: float | None = Field(
        default=None,
        ge=0,
        description="placed, but no agent has reported it running for this many seconds, past"
        " the scheduler's not_running_alarm_s (None: running, or not yet past the bound)",
    )


class AppSummary(Model):
    """An app in a list."""

    model_config = ConfigDict(extra="forbid")

    name: Ident
    tenant: Ident
    version: str
    workloads: int = Field(ge=0)
    pending: int = Field(ge=0, description="workloads with no node yet")
    not_running: int = Field(
        default=0, ge=0, description="placed workloads past the bound with no agent running them"
    )


class AppInfo(Model):
    """An app in full."""

    model_config = ConfigDict(extra="forbid")

    name: Ident
    tenant: Ident
    version: str
    manifest: AppManifest
    placements: list[PlacementInfo] = Field(default_factory=list)
    created_at: float = 0.0
    updated_at: float = 0.0


class AppReply(Reply):
    """The answer to deploy, update, scale and get."""

    app: AppInfo


class AppListReply(Reply):
    """The answer to list."""

    apps: list[AppSummary] = Field(default_factory=list)


class AppDeletedReply(Reply):
    """The answer to delete: the workloads that were removed."""

    app: Ident
    removed: list[Ident] = Field(default_factory=list)


class Unschedulable(Model):
    """``error.details`` of an ``unschedulable`` reply: why each node was refused.

    ``reasons`` maps node id to reason, sorted by node id and capped (``truncated`` counts the
    rest); ``reason_counts`` counts every node by reason.
    """

    model_config = ConfigDict(extra="forbid")

    component: Ident
    replica: int = Field(ge=0)
    reasons: dict[str, str] = Field(default_factory=dict)
    reason_counts: dict[str, int] = Field(default_factory=dict)
    truncated: int = Field(default=0, ge=0)
