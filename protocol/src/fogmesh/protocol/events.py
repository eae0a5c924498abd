"""Events: things that happened, published under ``events/fleet/{kind}`` or
``events/tenants/{tenant}/{kind}``, with timings where they have them.

Every kind has a typed payload model (:data:`EVENT_DATA`); ``Event.data`` is that model's JSON
form. Publishers build events with :meth:`Event.of`, readers read them with
:meth:`Event.payload_as`, so neither side guesses at keys.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, TypeVar

from pydantic import ConfigDict, Field, model_validator

from fogmesh.protocol._ids import Ident
from fogmesh.protocol._model import Model
from fogmesh.protocol.envelope import Envelope

__all__ = [
    "EVENT_DATA",
    "AppEventData",
    "DesiredRejectedData",
    "DeviceLostData",
    "Event",
    "EventData",
    "EventKind",
    "MigrationData",
    "NodeEventData",
    "NotRunningData",
    "PlacementFailedData",
    "ReplacedData",
    "SiteEventData",
    "WorkloadStateData",
]


class EventKind(StrEnum):
    """The kinds of event fogmesh publishes."""

    NODE_JOINED = "node-joined"
    NODE_LOST = "node-lost"
    NODE_STALE = "node-stale"
    NODE_BACK = "node-back"
    DESIRED_REJECTED = "desired-rejected"
    WORKLOAD_STATE = "workload-state"
    APP_DEPLOYED = "app-deployed"
    APP_UPDATED = "app-updated"
    APP_DELETED = "app-deleted"
    PLACEMENT_FAILED = "placement-failed"
    REPLACED = "workload-replaced"
    MIGRATION_STARTED = "migration-started"
    MIGRATION_FINISHED = "migration-finished"
    MIGRATION_FAILED = "migration-failed"
    SITE_UNREACHABLE = "site-unreachable"
    SITE_REACHABLE = "site-reachable"
    WORKLOAD_NOT_RUNNING = "workload-not-running"
    DEVICE_LOST = "device-lost"


class EventData(Model):
    """The base of every event payload: unknown keys are refused, as in every message."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class NodeEventData(EventData):
    """node-joined / -stale / -lost / -back (the registry's liveness tracker)."""

    from_: str | None = Field(default=None, alias="from", description="the previous state")
    via: str | None = Field(default=None, description="hello, state or heartbeat (back)")
    rebooted: bool | None = Field(default=None, description="a new boot id (back)")
    reason: str | None = Field(default=None, description="last-will or missed-heartbeats (lost)")
    silent_s: float | None = Field(default=None, ge=0, description="time since the last sign")
    interval_s: float | None = Field(default=None, gt=0, description="the heartbeat interval")


class SiteEventData(EventData):
    """site-unreachable / site-reachable (the registry, from the site's link status)."""

    site: str = Field(max_length=128, description="the site broker, as the nodes' facts name it")
    links: list[str] = Field(default_factory=list, description="its links, as broker/link")
    nodes: list[str] = Field(default_factory=list, description="the nodes behind it")
    since: float | None = Field(default=None, description="unix time the link went down")
    down_s: float | None = Field(default=None, ge=0, description="how long it was cut (reachable)")


class DesiredRejectedData(EventData):
    """desired-rejected (an agent refused a desired state it could not read)."""

    size: int = Field(ge=0, description="bytes of the refused message")
    held_generation: int = Field(
        ge=-1, description="the generation the agent keeps running (-1: none yet)"
    )


class WorkloadStateData(EventData):
    """workload-state (an agent's workload changed phase)."""

    from_: str = Field(alias="from", description="the old phase")
    to: str = Field(description="the new phase")


class AppEventData(EventData):
    """app-deployed / -updated / -deleted (the scheduler); the registry records apps from it.

    ``manifest`` is the manifest as the scheduler accepted it (its JSON form; deployed and
    updated carry it, deleted does not). ``version`` defaults to the manifest's.
    """

    version: str = Field(min_length=1, max_length=64)
    manifest: dict[str, Any] | None = None
    beside: bool | None = Field(
        default=None, description="updated: the new version started beside the old one"
    )
    component: Ident | None = Field(default=None, description="scaled: the component")
    replicas: int | None = Field(default=None, ge=0, description="scaled: its replica count")

    @model_validator(mode="before")
    @classmethod
    def _version_from_manifest(cls, data: Any) -> Any:
        if isinstance(data, dict) and "version" not in data:
            manifest = data.get("manifest")
            version = manifest.get("version") if isinstance(manifest, dict) else None
            return {**data, "version": str(version or "1")}
        return data


class PlacementFailedData(EventData):
    """placement-failed (the scheduler found no node for a pending workload; it retries)."""

    from_: str | None = Field(default=None, alias="from", description="the node it was moved off")
    reason_counts: dict[str, int] = Field(
        default_factory=dict, description="how many nodes refused it for each reason"
    )


class ReplacedData(EventData):
    """workload-replaced: the scheduler moved it (``from`` / ``to`` nodes), or an agent
    replaced it in place with a new spec (``old_spec_hash`` / ``new_spec_hash``)."""

    from_: str | None = Field(default=None, alias="from")
    to: str | None = None
    old_spec_hash: str | None = None
    new_spec_hash: str | None = None


class NotRunningData(EventData):
    """workload-not-running (the scheduler): a workload it counts as placed on ``node`` that
    no agent has reported running (with its current spec) for longer than the bound."""

    node: str = Field(max_length=128, description="the node it is placed on")
    not_running_s: float = Field(ge=0, description="seconds placed (or since last seen running)")
    bound_s: float = Field(gt=0, description="the scheduler's not_running_alarm_s")
    node_state: str = Field(
        max_length=32, description="the node as the scheduler sees it: online, stale, offline"
    )


class MigrationData(EventData):
    """migration-started / -finished / -failed (the migrator; docs/migrator.md).

    ``stages_s`` holds the paper's four stages as they finished: ``peer_selection``,
    ``configuration``, ``state_transfer`` (dependency and state transfer) and ``activation``.
    ``freeze_s`` runs from the source's freeze to the workload running on the peer.
    ``reasons``: why each node could not take it (failed), or why the move stopped.
    """

    trigger: str = Field(max_length=32, description="node-lost, overload, drain or by-hand")
    from_: str | None = Field(default=None, alias="from", description="the source node")
    to: str | None = Field(default=None, description="the peer")
    level: int | None = Field(default=None, ge=0, le=2, description="the peer's level")
    stateful: bool | None = Field(default=None, description="its state moved with it")
    state_bytes: int | None = Field(default=None, ge=0)
    freeze_s: float | None = Field(default=None, ge=0)
    replica_age_s: float | None = Field(
        default=None, ge=0, description="node-lost: how old the replica it started from was"
    )
    duration_s: float | None = Field(default=None, ge=0)
    stages_s: dict[str, float] = Field(default_factory=dict)
    reasons: dict[str, str] = Field(default_factory=dict)


class DeviceLostData(EventData):
    """device-lost (the node agent): a device a workload was given went away (docs/devices.md)."""

    device: str = Field(max_length=256, description="its name, e.g. serial:ttyUSB0")
    path: str = Field(max_length=1024, description="its host path")
    kind: str = Field(max_length=32, description="serial, video, gpio, usb, gpu or device")


EVENT_DATA: dict[EventKind, type[EventData]] = {
    EventKind.NODE_JOINED: NodeEventData,
    EventKind.NODE_LOST: NodeEventData,
    EventKind.NODE_STALE: NodeEventData,
    EventKind.NODE_BACK: NodeEventData,
    EventKind.DESIRED_REJECTED: DesiredRejectedData,
    EventKind.WORKLOAD_STATE: WorkloadStateData,
    EventKind.APP_DEPLOYED: AppEventData,
    EventKind.APP_UPDATED: AppEventData,
    EventKind.APP_DELETED: AppEventData,
    EventKind.PLACEMENT_FAILED: PlacementFailedData,
    EventKind.REPLACED: ReplacedData,
    EventKind.MIGRATION_STARTED: MigrationData,
    EventKind.MIGRATION_FINISHED: MigrationData,
    EventKind.MIGRATION_FAILED: MigrationData,
    EventKind.SITE_UNREACHABLE: SiteEventData,
    EventKind.SITE_REACHABLE: SiteEventData,
    EventKind.WORKLOAD_NOT_RUNNING: NotRunningData,
    EventKind.DEVICE_LOST: DeviceLostData,
}
"""The payload model of each event kind."""

D = TypeVar("D", bound=EventData)


class Event(Envelope):
    """One event. ``data`` holds the kind's payload (:data:`EVENT_DATA`; timings in seconds
    end in ``_s``)."""

    kind: EventKind
    node: Ident | None = None
    app: Ident | None = None
    workload: Ident | None = None
    message: str = Field(default="", max_length=4096)
    data: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def of(cls, kind: EventKind, data: EventData, **fields: Any) -> Event:
        """An event of ``kind`` with its typed payload (``TypeError`` for another kind's)."""
        if not isinstance(data, EVENT_DATA[kind]):
            raise TypeError(f"{kind.value} carries {EVENT_DATA[kind].__name__}")
        body = data.model_dump(mode="json", by_alias=True, exclude_none=True)
        return cls(kind=kind, data=body, **fields)

    def payload(self) -> EventData:
        """``data`` validated as this kind's payload (``pydantic.ValidationError`` if not)."""
        return EVENT_DATA[self.kind].model_validate(self.data)

    def payload_as(self, model: type[D]) -> D:
        """``data`` as ``model``, which must be this kind's payload model."""
        if EVENT_DATA[self.kind] is not model:
            raise TypeError(f"{self.kind.value} carries {EVENT_DATA[self.kind].__name__}")
        return model.model_validate(self.data)
