"""Migrate on device loss: a workload whose manifest says ``on_device_lost: migrate`` is moved
off a node that lost a device it was given, to a node with an equal one (docs/devices.md).

The agent tells the holder's tenant (``fm/v1/events/tenants/{tenant}/device-lost``) and sends
its hello again without the device. The migrator takes the event as a hint only: it moves the
workload once the node's own facts (its latest hello) confirm that a device the workload asks
for is gone, and the workload is still placed there. So a forged or stale event moves nothing,
and a device back before the move keeps the workload where it is. The move is an ordinary
migration (trigger ``device-lost``): the scheduler picks among the peers whose facts answer
every device request, so only a node with an equal device is chosen. With no such peer now the
move fails (``migration-failed``) and is tried again, further apart each time, while the
device stays gone.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog

from fogmesh.bus import Bus, MessageContext
from fogmesh.migrator.fleet import FleetView
from fogmesh.migrator.guard import Guard
from fogmesh.migrator.mover import Outcome
from fogmesh.protocol import topics
from fogmesh.protocol.events import DeviceLostData, Event, EventKind
from fogmesh.protocol.migration import MigrationTrigger, StageOutcome
from fogmesh.protocol.workload import DeviceLossPolicy, WorkloadSpec

__all__ = ["CONFIRM_S", "RETRY_CAP_S", "RETRY_S", "DeviceLoss", "Move"]

log = structlog.get_logger("fogmesh.migrator")

CONFIRM_S = 30.0
"""How long a loss waits for the node's facts to confirm it before it is dropped."""
RETRY_S = 5.0
"""The first wait before a move that failed (no peer with an equal device) is tried again."""
RETRY_CAP_S = 300.0
"""The longest wait between tries."""

Move = Callable[[str, str, MigrationTrigger], Awaitable[Outcome]]
"""``(tenant, workload, trigger)`` -> how the migration ended (the service's mover)."""


@dataclass(slots=True)
class _Loss:
    tenant: str
    workload: str
    node: str
    device: str
    seen: float
    next_try: float = 0.0
    tries: int = 0


class DeviceLoss:
    """The workloads waiting to move because a device they hold went away."""

    def __init__(self, fleet: FleetView, guard: Guard) -> None:
        self.fleet = fleet
        self.guard = guard
        self.pending: dict[str, _Loss] = {}
        """``tenant/workload`` -> its loss, until moved, back, or unconfirmed."""

    def attach(self, bus: Bus) -> None:
        """Follow every tenant's ``device-lost`` events."""
        topic = topics.tenant_event_filter(None, EventKind.DEVICE_LOST)
        bus.subscribe(topic, Event, self.on_event)

    async def on_event(self, event: Event, ctx: MessageContext) -> None:
        """Note a holder to move (if its manifest says so); the tick moves it."""
        self.note(event, ctx.ref.tenant if ctx.ref is not None else None)

    def note(self, event: Event, tenant: str | None, now: float | None = None) -> str:
        """Judge one event; returns what was decided (logged, and for the tests)."""
        why = self._refusal(event, tenant)
        if why is not None:
            log.warning("device-lost event ignored", reason=why, workload=event.workload,
                        node=event.node, tenant=tenant)  # fmt: skip
            return why
        assert tenant is not None
        assert event.workload is not None
        assert event.node is not None
        found = self.fleet.find(tenant, event.workload)
        if found is None or found[0] != event.node:
            return "not placed on that node"
        if found[1].on_device_lost is not DeviceLossPolicy.MIGRATE:
            return "its manifest keeps it where it is"
        key = f"{tenant}/{event.workload}"
        if key not in self.pending:
            device = event.payload_as(DeviceLostData).device
            self.pending[key] = _Loss(tenant, event.workload, event.node, device,
                                      time.monotonic() if now is None else now)  # fmt: skip
            log.info("device lost; its holder will move", workload=key, node=event.node,
                     device=device)  # fmt: skip
        return "pending"

    @staticmethod
    def _refusal(event: Event, tenant: str | None) -> str | None:
        if event.kind is not EventKind.DEVICE_LOST:
            return f"a {event.kind.value} event on the device-lost topic"
        if tenant is None or (event.tenant is not None and event.tenant != tenant):
            return "its tenant differs from its topic's"
        if event.workload is None or event.node is None:
            return "it names no workload or no node"
        try:
            event.payload_as(DeviceLostData)
        except (TypeError, ValueError) as exc:
            return f"bad payload: {exc}"
        return None

    def gone(self, loss: _Loss) -> WorkloadSpec | None:
        """The spec of the loss's workload if it is still on its node and the node's facts
        answer none of the devices for one of its requests (the loss is real); else None."""
        found = self.fleet.find(loss.tenant, loss.workload)
        facts = self.fleet.node(loss.node).facts
        if found is None or found[0] != loss.node or facts is None:
            return None
        spec = found[1]
        unmet = [r for r in spec.devices if not any(info.answers(r) for info in facts.device_info)]
        return spec if unmet else None

    async def tick(self, move: Move, now: float | None = None) -> None:
        """Move each confirmed loss's workload whose turn it is; forget the settled ones."""
        now = time.monotonic() if now is None else now
        for key, loss in list(self.pending.items()):
            spec = self.gone(loss)
            if spec is None:
                placed = self.fleet.find(loss.tenant, loss.workload)
                if placed is None or placed[0] != loss.node or loss.tries:
                    del self.pending[key]  # moved, removed, or its device came back
                elif now - loss.seen > CONFIRM_S:
                    log.info("device loss not confirmed by the node's facts", workload=key,
                             node=loss.node, device=loss.device)  # fmt: skip
                    del self.pending[key]
                continue
            if now < loss.next_try:
                continue
            held = self.guard.why_not(key, loss.node, now)
            outcome = (
                Outcome(StageOutcome.SKIPPED, reason=held)
                if held is not None
                else await move(loss.tenant, loss.workload, MigrationTrigger.DEVICE_LOST)
            )
            if outcome.outcome is StageOutcome.MOVED:
                log.info("moved off a lost device", workload=key, to=outcome.peer)
                del self.pending[key]
                continue
            loss.tries += 1
            loss.next_try = now + min(RETRY_S * 2 ** (loss.tries - 1), RETRY_CAP_S)
            log.info("device-lost move not done; tried again later", workload=key,
                     reason=outcome.reason, retry_in_s=loss.next_try - now)  # fmt: skip
