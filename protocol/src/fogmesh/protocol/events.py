"""Events: things that happened, published under ``events/fleet/{kind}`` or
``events/tenants/{tenant}/{kind}``, with timings where they have them."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import Field

from fogmesh.protocol._ids import Ident
from fogmesh.protocol.envelope import Envelope

__all__ = ["Event", "EventKind"]


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


class Event(Envelope):
    """One event. ``data`` holds kind-specific detail (timings in seconds end in ``_s``)."""

    kind: EventKind
    node: Ident | None = None
    app: Ident | None = None
    workload: Ident | None = None
    message: str = Field(default="", max_length=4096)
    data: dict[str, Any] = Field(default_factory=dict)
