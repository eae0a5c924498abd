"""A fleet event of the registry's own, and the ``events`` row of any event (pure; used by the
ingest side and by the writer, which records a lost join claim's event in its place)."""

from __future__ import annotations

from typing import Any

from fogmesh.protocol import Event
from fogmesh.registry.liveness import Transition

__all__ = ["event_row", "transition_event"]


def transition_event(tr: Transition, source: str) -> Event | None:
    """The fleet event of a liveness transition (None for a silent one)."""
    if tr.kind is None:
        return None
    return Event(
        kind=tr.kind,
        node=tr.node,
        source=source,
        message=f"node {tr.node} {tr.old or 'unknown'} -> {tr.new} ({tr.reason})",
        data=tr.data,
    )


def event_row(event: Event, tenant: str | None, received_at: float) -> dict[str, Any]:
    """An ``events`` row for ``event``; ``tenant`` is the one its topic names (None: fleet)."""
    return {
        "id": event.id,
        "kind": event.kind.value,
        "tenant": tenant,
        "node": event.node,
        "app": event.app,
        "workload": event.workload,
        "ts": event.ts,
        "source": event.source,
        "message": event.message,
        "data": event.data,
        "received_at": received_at,
    }
