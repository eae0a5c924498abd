"""The desired state as the agent takes it from the broker: validated, for this node, written to
disk, then the reconciler is woken; one that fails any of these is rejected (a
``desired-rejected`` event, the one held is kept). A cleared retained message keeps the one held.
"""

from __future__ import annotations

import asyncio

import structlog
from pydantic import ValidationError

from fogmesh.agent.reconcile import Reconciler
from fogmesh.agent.store import DesiredStore
from fogmesh.bus import Bus, MessageContext, RawMessage
from fogmesh.protocol import DesiredState, error_info_from_validation, topics

__all__ = ["DesiredIntake"]

log = structlog.get_logger("fogmesh.agent")


class DesiredIntake:
    """Part of :class:`~fogmesh.agent.service.Agent`: takes or rejects each desired state."""

    node: str  # set by Agent.__init__
    client_id: str
    store: DesiredStore
    reconciler: Reconciler | None

    async def _on_desired(self, message: RawMessage, ctx: MessageContext) -> None:
        assert self.reconciler is not None
        if not message.payload:
            log.info("desired state cleared on the broker; keeping the one held")
            return
        try:
            desired = DesiredState.model_validate_json(message.payload)
        except ValidationError as exc:
            await self._reject(ctx.bus, error_info_from_validation(exc).message, message.payload)
            return
        if desired.node != self.node:
            reason = f"desired state is for node {desired.node!r}, not {self.node!r}"
            await self._reject(ctx.bus, reason, message.payload)
            return
        try:
            taken = await asyncio.to_thread(self.store.accept, desired)
        except OSError as exc:
            log.exception("cannot write the desired state to disk")
            await self._reject(ctx.bus, f"cannot persist the desired state: {exc}", message.payload)
            return
        if taken:
            log.info(
                "new desired state", generation=desired.generation, workloads=len(desired.workloads)
            )
            self.reconciler.set_rejected("")
            self.reconciler.trigger()

    async def _reject(self, bus: Bus, reason: str, raw: bytes) -> None:
        assert self.reconciler is not None
        log.warning("desired state rejected", reason=reason[:500], size=len(raw))
        from fogmesh.protocol.events import DesiredRejectedData, Event, EventKind

        self.reconciler.set_rejected(reason)
        event = Event.of(
            EventKind.DESIRED_REJECTED,
            DesiredRejectedData(size=len(raw), held_generation=self.store.generation),
            node=self.node,
            message=reason[:4096],
            source=self.client_id,
        )
        await bus.publish(topics.fleet_event(EventKind.DESIRED_REJECTED), event)
