"""The registry's queries: requests on ``fm/v1/api/{tenant}/{resource}/{action}`` and replies.

Resources and actions (see ``docs/registry.md``)::

    nodes/list            ListNodes            -> NodeListReply
    nodes/get             GetNode              -> NodeReply
    workloads/list        ListWorkloads        -> WorkloadListReply
    events/list           ListEvents           -> EventListReply
    registry-apps/list    ListRegistryApps     -> RegistryAppListReply
    registry-apps/get     GetRegistryApp       -> RegistryAppReply

The tenant is the one in the topic. Nodes are fleet-wide facts every tenant may read; apps,
workloads and tenant events are visible to their own tenant only (fleet events to all).
Lists are paginated: ``limit`` items at most, and ``next_cursor`` (opaque) to pass back as
``cursor`` for the next page; ``next_cursor`` is None on the last page.
"""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field, model_validator

from fogmesh.protocol._ids import Ident
from fogmesh.protocol._model import Model
from fogmesh.protocol.envelope import Reply, Request
from fogmesh.protocol.events import Event
from fogmesh.protocol.node import Location, NodeFacts, Usage
from fogmesh.protocol.workload import WorkloadPhase

__all__ = [
    "EVENTS_RESOURCE",
    "MAX_PAGE",
    "NODES_RESOURCE",
    "REGISTRY_APPS_RESOURCE",
    "WORKLOADS_RESOURCE",
    "EventListReply",
    "GetNode",
    "GetRegistryApp",
    "ListEvents",
    "ListNodes",
    "ListRegistryApps",
    "ListWorkloads",
    "NearFilter",
    "NodeInfo",
    "NodeListReply",
    "NodeReply",
    "RegistryAppInfo",
    "RegistryAppListReply",
    "RegistryAppReply",
    "UsageSample",
    "WorkloadInfo",
    "WorkloadListReply",
]

NODES_RESOURCE = "nodes"
WORKLOADS_RESOURCE = "workloads"
EVENTS_RESOURCE = "events"
REGISTRY_APPS_RESOURCE = "registry-apps"
MAX_PAGE = 500
"""The largest ``limit`` a list query accepts."""

_NODE_STATES = ("online", "stale", "offline", "unreachable")


class _Page(Request):
    """Fields every list query has."""

    limit: int = Field(default=100, ge=1, le=MAX_PAGE)
    cursor: str | None = Field(default=None, max_length=512)


class NearFilter(Model):
    """Within ``km`` kilometres (great-circle) of a point."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    km: float = Field(gt=0, le=20_100)


class ListNodes(_Page):
    """Nodes, ordered by id; every filter given must hold."""

    labels: dict[str, str] = Field(default_factory=dict, description="each label must equal")
    arch: str | None = Field(default=None, max_length=32)
    state: str | None = Field(default=None, description="online, stale, offline or unreachable")
    near: NearFilter | None = None

    @model_validator(mode="after")
    def _known_state(self) -> ListNodes:
        if self.state is not None and self.state not in _NODE_STATES:
            raise ValueError(f"state must be one of {', '.join(_NODE_STATES)}")
        return self


class GetNode(Request):
    """One node, with its recent usage history."""

    node: Ident
    history: int = Field(default=10, ge=0, le=1000, description="usage samples to include")


class UsageSample(Model):
    """One heartbeat's usage, as stored."""

    model_config = ConfigDict(extra="forbid")

    ts: float
    seq: int
    usage: Usage


class NodeInfo(Model):
    """What the registry knows about a node."""

    model_config = ConfigDict(extra="forbid")

    node: Ident
    state: str = Field(description="online, stale, offline or unreachable")
    facts: NodeFacts | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    location: Location | None = None
    boot_id: str = ""
    first_seen: float = 0.0
    last_seen: float = 0.0
    state_since: float = 0.0
    heartbeat_interval_s: float | None = None
    last_seq: int | None = None
    usage: Usage | None = None
    distance_km: float | None = Field(default=None, description="set when the query had near")
    age_s: float | None = Field(
        default=None,
        ge=0,
        description="seconds since the node was last heard (last_seen), set unless it is online:"
        " what an unreachable, stale or offline node's view shows is that old",
    )
    history: list[UsageSample] = Field(default_factory=list)


class NodeListReply(Reply):
    """The answer to ``nodes/list``."""

    nodes: list[NodeInfo] = Field(default_factory=list)
    next_cursor: str | None = None


class NodeReply(Reply):
    """The answer to ``nodes/get``."""

    node: NodeInfo


class ListWorkloads(_Page):
    """The tenant's workloads, as their nodes report them, ordered by node then name."""

    app: Ident | None = None
    node: Ident | None = None
    phase: WorkloadPhase | None = None


class WorkloadInfo(Model):
    """One workload on one node."""

    model_config = ConfigDict(extra="forbid")

    node: Ident
    name: Ident
    tenant: Ident
    app: Ident
    component: Ident
    runtime: str = ""
    phase: WorkloadPhase
    reason: str = ""
    restarts: int = 0
    since: float = 0.0
    first_seen: float = 0.0
    updated_at: float = 0.0
    as_of: float | None = Field(
        default=None, description="unix time its node was last heard (its report is no newer)"
    )
    age_s: float | None = Field(
        default=None,
        ge=0,
        description="seconds since its node was last heard, set unless the node is online",
    )


class WorkloadListReply(Reply):
    """The answer to ``workloads/list``."""

    workloads: list[WorkloadInfo] = Field(default_factory=list)
    next_cursor: str | None = None


class ListEvents(_Page):
    """Events in the order the registry received them: fleet events and the tenant's own."""

    since: float | None = Field(default=None, description="only events with ts >= since")
    kind: str | None = Field(default=None, max_length=64)
    node: Ident | None = None
    app: Ident | None = None


class EventListReply(Reply):
    """The answer to ``events/list``."""

    events: list[Event] = Field(default_factory=list)
    next_cursor: str | None = None


class ListRegistryApps(_Page):
    """The tenant's apps as the scheduler announced them, ordered by name."""


class GetRegistryApp(Request):
    """One of the tenant's apps, with its manifest."""

    app: Ident


class RegistryAppInfo(Model):
    """An app as the registry recorded it from the scheduler's events."""

    model_config = ConfigDict(extra="forbid")

    name: Ident
    tenant: Ident
    version: str
    manifest: dict[str, Any] = Field(default_factory=dict)
    created_at: float = 0.0
    updated_at: float = 0.0


class RegistryAppListReply(Reply):
    """The answer to ``registry-apps/list`` (manifests left out; ``get`` has them)."""

    apps: list[RegistryAppInfo] = Field(default_factory=list)
    next_cursor: str | None = None


class RegistryAppReply(Reply):
    """The answer to ``registry-apps/get``."""

    app: RegistryAppInfo
