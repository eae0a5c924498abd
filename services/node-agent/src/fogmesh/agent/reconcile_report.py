"""What the reconciler reports: each phase change (logged, and sent as an event when an event
sink is set), the workloads' statuses, the node's actual state, and whether that changed since
it was last read (:attr:`~fogmesh.agent.reconcile.Reconciler.changed`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

import structlog

from fogmesh.agent.runtime.base import split_key
from fogmesh.agent.store import DesiredStore
from fogmesh.agent.tracked import Tracked, overall_state
from fogmesh.protocol import ActualState, WorkloadPhase, WorkloadSpec, WorkloadStatus

if TYPE_CHECKING:  # the event contract is imported by the first event (a node without
    # workloads sends none: docs/agent.md, "Memory")
    from fogmesh.protocol.events import Event, EventData, EventKind

__all__ = ["EventSink", "ReconcileReporting"]

log = structlog.get_logger("fogmesh.agent.reconcile")  # the reconciler's one logger

EventSink = Callable[[str | None, "Event"], None]


class ReconcileReporting:
    """Part of :class:`~fogmesh.agent.reconcile.Reconciler`: reports the tracked workloads'
    phases, statuses and the actual state."""

    node: str  # set by Reconciler.__init__
    store: DesiredStore
    tracked: dict[str, Tracked]
    rejected: str
    changed: asyncio.Event
    _emit: EventSink | None
    _pending_removals: set[str]
    _fingerprint: str

    def _listener(self, key: str) -> Callable[[WorkloadPhase, WorkloadPhase, str], None]:
        tenant, name = split_key(key)

        def changed(old: WorkloadPhase, new: WorkloadPhase, reason: str) -> None:
            tracked = self.tracked.get(key)
            log.info(
                "workload phase",
                workload=name,
                old=old.value,
                new=new.value,
                reason=reason,
                tenant=tenant,
            )
            if tracked is not None:
                from fogmesh.protocol.events import EventKind, WorkloadStateData

                self._send_event(
                    tracked.spec.tenant,
                    EventKind.WORKLOAD_STATE,
                    tracked.spec,
                    reason,
                    WorkloadStateData(from_=old.value, to=new.value),
                )
            self._note_change()

        return changed

    def _send_event(
        self,
        tenant: str | None,
        kind: EventKind,
        spec: WorkloadSpec,
        message: str,
        data: EventData,
    ) -> None:
        if self._emit is None:
            return
        from fogmesh.protocol.events import Event

        event = Event.of(
            kind,
            data,
            tenant=spec.tenant,
            node=self.node,
            app=spec.app,
            workload=spec.name,
            message=message[:4096],
        )
        self._emit(tenant, event)

    def statuses(self, tenant: str | None = None) -> list[WorkloadStatus]:
        """Each tracked workload's status (only ``tenant``'s when given), sorted by name."""
        return [
            t.status()
            for _, t in sorted(self.tracked.items())
            if tenant is None or t.spec.tenant == tenant
        ]

    def overall(self) -> Literal["converged", "converging", "degraded"]:
        """converged, converging or degraded."""
        return overall_state(self.tracked.values(), pending_removals=bool(self._pending_removals))

    def actual(self, source: str = "") -> ActualState:
        """The actual state now (per-workload usage is left to the heartbeat)."""
        workloads = [
            s.model_copy(update={"cpu_percent": 0.0, "memory_bytes": 0}) for s in self.statuses()
        ]
        return ActualState(
            node=self.node,
            source=source,
            observed_generation=self.store.generation,
            workloads=workloads,
            rejected=self.rejected,
            state=self.overall(),
        )

    def _note_change(self) -> None:
        actual = self.actual()
        body = {
            "g": actual.observed_generation,
            "w": [w.model_dump(mode="json", exclude={"since"}) for w in actual.workloads],
            "r": actual.rejected,
            "s": actual.state,
        }
        fingerprint = json.dumps(body, sort_keys=True)
        if fingerprint != self._fingerprint:
            self._fingerprint = fingerprint
            self.changed.set()
