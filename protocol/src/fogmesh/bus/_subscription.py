"""One subscription of a bus: its filter, model and handler, and the worker that runs it.

Messages of one subscription are handled in order; a handler that raises, refuses or is
cancelled by accident never ends the worker.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import aiomqtt
import structlog
from pydantic import BaseModel, ValidationError

from fogmesh.bus._context import MessageContext, RawMessage, Refusal, topic_ref
from fogmesh.bus._replies import invalid_payload_reply, payload_bytes
from fogmesh.protocol import ErrorCode, ErrorInfo

if TYPE_CHECKING:
    from fogmesh.bus._client import Bus

__all__ = ["Handler", "Subscription"]

log = structlog.get_logger("fogmesh.bus")

M = TypeVar("M", bound=BaseModel)
Handler = Callable[[M, MessageContext], Awaitable[None]]


@dataclass(slots=True)
class Subscription:
    """A filter, the model its payloads must validate as, and the handler that gets them."""

    filter: str
    model: type[BaseModel]
    handler: Handler[Any]
    qos: int
    queue: asyncio.Queue[aiomqtt.Message] = field(default_factory=asyncio.Queue)
    worker: asyncio.Task[None] | None = None

    async def serve(self, bus: Bus) -> None:
        """Handle this subscription's messages one by one, for as long as the bus runs."""
        sub = self
        while True:
            message = await sub.queue.get()
            try:
                await self._handle(bus, message)
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise  # the bus is closing
                log.warning("a handler was cancelled; the subscription goes on", topic=sub.filter)
            except Exception:  # the loop must outlive any one message
                log.exception("bus handler failed outside its guard", topic=message.topic.value)

    async def _handle(self, bus: Bus, message: aiomqtt.Message) -> None:
        sub = self
        topic = message.topic.value
        payload = payload_bytes(message.payload)
        try:
            model = (
                RawMessage(payload=payload)
                if sub.model is RawMessage
                else sub.model.model_validate_json(payload)
            )
        except ValidationError as exc:
            with structlog.contextvars.bound_contextvars(topic=topic):
                await self._refuse_invalid(bus, payload, exc)
            return
        correlation_id = getattr(model, "correlation_id", None)
        with structlog.contextvars.bound_contextvars(topic=topic, correlation_id=correlation_id):
            ctx = MessageContext(bus, topic, topic_ref(topic), bool(message.retain), model)
            try:
                await sub.handler(model, ctx)
            except Refusal as refusal:
                log.info("request refused", code=refusal.code.value, reason=refusal.message)
                await ctx.reply_error(refusal.info())
            except Exception as exc:
                log.exception("handler raised")
                # the details stay in this service's log; the caller learns what and where
                await ctx.reply_error(
                    ErrorInfo(
                        code=ErrorCode.INTERNAL,
                        message=f"internal error ({type(exc).__name__}) in {bus.config.client_id}"
                        f"; correlation_id {correlation_id}",
                    )
                )

    @staticmethod
    async def _refuse_invalid(bus: Bus, payload: bytes, exc: ValidationError) -> None:
        """Log an invalid payload and answer it when it says where to."""
        answer = invalid_payload_reply(payload, exc, source=bus.config.client_id)
        if answer is not None:
            reply_to, error = answer
            await bus.publish(reply_to, error, qos=1)
