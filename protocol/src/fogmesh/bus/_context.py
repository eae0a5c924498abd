"""What a handler gets beside its message: where it came from and how to answer it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import structlog
from pydantic import BaseModel, ConfigDict

from fogmesh.bus._reply_rule import reply_allowed, topic_ref
from fogmesh.protocol import (
    ErrorCode,
    ErrorInfo,
    ErrorReply,
    FogmeshError,
    Request,
    TopicRef,
)
from fogmesh.protocol._model import Model

if TYPE_CHECKING:
    from fogmesh.bus._client import Bus

__all__ = ["Backlog", "MessageContext", "RawMessage", "Refusal", "run_handler", "topic_ref"]

log = structlog.get_logger("fogmesh.bus")


class RawMessage(Model):
    """Subscribe with this model to receive payloads unparsed.

    For the apps' own data plane, and for handlers that must answer even a payload that is not
    JSON (a node agent rejecting a malformed desired state). The bus hands over the bytes as
    they came; validating them is the handler's job.
    """

    model_config = ConfigDict(frozen=True)

    payload: bytes


class Refusal(FogmeshError):
    """Raised by a handler to answer its request with an error reply of ``code``."""

    def __init__(
        self, code: ErrorCode, message: str, *, details: dict[str, object] | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = dict(details or {})

    def info(self) -> ErrorInfo:
        """The wire form of this refusal."""
        return ErrorInfo(code=self.code, message=self.message, details=self.details)


class Backlog(Protocol):
    """How far behind the handling of a subscription is."""

    def waiting_since(self) -> float | None:
        """When the oldest message not yet handled was received (monotonic; None: none)."""
        ...


@dataclass(slots=True)
class MessageContext:
    """The envelope of a delivery: topic, parsed topic, retained flag, and the bus to answer on.

    ``received``: when the bus took the message off its connection (monotonic seconds; a
    message waits in its subscription's queue after that). ``backlog``: that subscription's
    queue (None for a context made outside a subscription).
    """

    bus: Bus
    topic: str
    ref: TopicRef | None
    retained: bool
    message: BaseModel
    received: float = 0.0
    backlog: Backlog | None = None

    def with_message(self, message: BaseModel) -> MessageContext:
        """This delivery with ``message`` in place of what the bus parsed (for a router)."""
        return MessageContext(
            self.bus, self.topic, self.ref, self.retained, message, self.received, self.backlog
        )

    @property
    def request(self) -> Request | None:
        """The message as a request, if it is one."""
        return self.message if isinstance(self.message, Request) else None

    async def reply(self, answer: BaseModel) -> bool:
        """Publish ``answer`` on the request's ``reply_to``; False when there is none.

        Also False, with a log line, when the reply rule forbids that ``reply_to`` for this
        request's topic (see :func:`fogmesh.bus.reply_allowed`): nothing is published there.
        """
        request = self.request
        if request is None or request.reply_to is None:
            return False
        if not reply_allowed(self.topic, request.reply_to):
            log.warning(
                "reply_to refused by the reply rule", topic=self.topic, reply_to=request.reply_to
            )
            return False
        await self.bus.publish(request.reply_to, answer, qos=1)
        return True

    async def reply_error(self, error: ErrorInfo) -> bool:
        """Answer the request with an :class:`ErrorReply`."""
        request = self.request
        if request is None:
            return False
        answer = ErrorReply(
            correlation_id=request.correlation_id,
            tenant=request.tenant,
            source=self.bus.config.client_id,
            error=error,
        )
        return await self.reply(answer)


async def run_handler(
    handler: Callable[[Any, MessageContext], Awaitable[None]],
    message: BaseModel,
    ctx: MessageContext,
) -> str:
    """Run ``handler``: a :class:`Refusal` becomes its error reply, any other exception
    ``internal`` without the exception's text (it stays in this service's log). Returns the
    outcome for the audit record: ``ok`` or the error code answered."""
    correlation_id = getattr(message, "correlation_id", None)
    # bind and reset by token: ``bound_contextvars`` copies the whole context first (14 us a
    # message on a 2-core test machine against 4, paid by every message of a heartbeat flood)
    tokens = structlog.contextvars.bind_contextvars(topic=ctx.topic, correlation_id=correlation_id)
    try:
        try:
            await handler(message, ctx)
        except Refusal as refusal:
            log.info("request refused", code=refusal.code.value, reason=refusal.message)
            await ctx.reply_error(refusal.info())
            return refusal.code.value
        except Exception as exc:
            log.exception("handler raised")
            # the caller learns what and where, never the text (it may hold another's data)
            await ctx.reply_error(
                ErrorInfo(
                    code=ErrorCode.INTERNAL,
                    message=f"internal error ({type(exc).__name__}) in {ctx.bus.config.client_id}"
                    f"; correlation_id {correlation_id}",
                )
            )
            return ErrorCode.INTERNAL.value
    finally:
        structlog.contextvars.reset_contextvars(**tokens)
    return "ok"
