"""One subscription of a bus: its filter, model and handler, and the worker that runs it.

Messages of one subscription are handled in order; a handler that raises, refuses or is
cancelled by accident never ends the worker. A QoS 1 message is acknowledged to the broker only
once every subscription it went to has handled it (returned, refused or failed: a poison message
is acknowledged too, so it is not redelivered forever); one still queued when the service dies
is delivered again to its persistent session.

Each delivery is stamped (monotonic) when the receive loop takes it off its connection, and a
subscription tells the arrival of the oldest message it has not finished handling
(:meth:`Subscription.waiting_since`): a service that judges time by what it has read (the
registry's liveness) looks at how far behind its own queues are, not only at the clock.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import aiomqtt
import structlog
from pydantic import BaseModel, ValidationError

from fogmesh.bus._context import MessageContext, RawMessage, run_handler, topic_ref
from fogmesh.bus._inbox import Inbox
from fogmesh.bus._replies import envelope_hint, invalid_payload_reply, payload_bytes, refusal_reply
from fogmesh.protocol import ErrorCode, ErrorInfo

if TYPE_CHECKING:
    from fogmesh.bus._client import Bus

__all__ = ["Delivery", "Handler", "Subscription"]

log = structlog.get_logger("fogmesh.bus")

M = TypeVar("M", bound=BaseModel)
Handler = Callable[[M, MessageContext], Awaitable[None]]


@dataclass(slots=True)
class Delivery:
    """A message as it came from one connection, and how many subscriptions still hold it;
    ``received`` is when it was taken off the connection (monotonic seconds)."""

    message: aiomqtt.Message
    client: aiomqtt.Client
    pending: int = 1
    received: float = field(default_factory=time.monotonic)


@dataclass(slots=True)
class Subscription:
    """A filter, the model its payloads must validate as, and the handler that gets them.

    ``max_payload`` (bytes) overrides the bus's limit for this filter (None: the bus's).
    """

    filter: str
    model: type[BaseModel]
    handler: Handler[Any]
    qos: int
    max_payload: int | None = None
    queue: Inbox[Delivery] = field(default_factory=Inbox)
    worker: asyncio.Task[None] | None = None
    handling: Delivery | None = None
    """The delivery its handler has now (None: between messages)."""

    def waiting_since(self) -> float | None:
        """When the oldest message this subscription has not finished handling was received
        (monotonic; None: nothing waits). Messages are handled in order, so every message
        received before then is handled."""
        delivery = self.handling or self.queue.first()
        return None if delivery is None else delivery.received

    async def serve(self, bus: Bus) -> None:
        """Handle this subscription's messages one by one, for as long as the bus runs."""
        while True:
            delivery = await self.queue.get()
            self.handling = delivery
            try:
                await self._handle(bus, delivery)
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise  # the bus is closing: not handled, so not acknowledged
                log.warning("a handler was cancelled; the subscription goes on", topic=self.filter)
            except Exception:  # the loop must outlive any one message
                log.exception("bus handler failed outside its guard", topic=self.filter)
            finally:
                self.handling = None
            delivery.pending -= 1
            if delivery.pending <= 0:
                bus.acknowledge(delivery)

    async def _handle(self, bus: Bus, delivery: Delivery) -> None:
        message = delivery.message
        topic = message.topic.value
        payload = payload_bytes(message.payload)
        limit = self.max_payload or bus.config.max_payload
        if len(payload) > limit:
            with structlog.contextvars.bound_contextvars(topic=topic):
                await self._refuse_oversized(bus, topic, payload, limit)
            return
        try:
            model = (
                RawMessage(payload=payload)
                if self.model is RawMessage
                else self.model.model_validate_json(payload)
            )
        except ValidationError as exc:
            with structlog.contextvars.bound_contextvars(topic=topic):
                answer = invalid_payload_reply(
                    payload, exc, source=bus.config.client_id, topic=topic
                )
                if answer is not None:
                    await bus.publish(*answer, qos=1)
            return
        ref = topic_ref(topic)
        ctx = MessageContext(bus, topic, ref, bool(message.retain), model, delivery.received, self)
        await run_handler(self.handler, model, ctx)

    @staticmethod
    async def _refuse_oversized(bus: Bus, topic: str, payload: bytes, limit: int) -> None:
        """Log a payload over the limit and answer it, found by a bounded scan, not parsed."""
        log.warning("payload over the size limit", size=len(payload), limit=limit)
        info = ErrorInfo(
            code=ErrorCode.INVALID_PAYLOAD,
            message=f"payload of {len(payload)} bytes exceeds the limit of {limit} bytes",
            details={"size": len(payload), "limit": limit},
        )
        answer = refusal_reply(
            payload, info, source=bus.config.client_id, topic=topic, where=envelope_hint(payload)
        )
        if answer is not None:
            await bus.publish(*answer, qos=1)
