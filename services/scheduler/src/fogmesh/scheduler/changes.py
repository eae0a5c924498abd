"""What one of the scheduler's operations changed: the service saves the store and publishes it."""

from __future__ import annotations

from dataclasses import dataclass, field

from fogmesh.protocol.events import Event

__all__ = ["Changes"]


@dataclass(slots=True)
class Changes:
    """Nodes whose desired state must be republished, apps whose record must be (key
    tenant/app), and events to publish (tenant, event)."""

    dirty: set[str] = field(default_factory=set)
    apps: set[str] = field(default_factory=set)
    events: list[tuple[str, Event]] = field(default_factory=list)
