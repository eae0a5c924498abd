"""What a handler gets beside its message: where it came from and how to answer it."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

from fogmesh.protocol import (
    ContractError,
    ErrorCode,
    ErrorInfo,
    ErrorReply,
    FogmeshError,
    Request,
    TopicRef,
    parse_topic,
)

if TYPE_CHECKING:
    from fogmesh.bus._client import Bus

__all__ = ["MessageContext", "RawMessage", "Refusal", "topic_ref"]


class RawMessage(BaseModel):
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


@lru_cache(maxsize=4096)
def topic_ref(topic: str) -> TopicRef | None:
    """The parsed topic, or None for topics outside the fogmesh tree."""
    try:
        return parse_topic(topic)
    except ContractError:
        return None


@dataclass(slots=True)
class MessageContext:
    """The envelope of a delivery: topic, parsed topic, retained flag, and the bus to answer on."""

    bus: Bus
    topic: str
    ref: TopicRef | None
    retained: bool
    message: BaseModel

    @property
    def request(self) -> Request | None:
        """The message as a request, if it is one."""
        return self.message if isinstance(self.message, Request) else None

    async def reply(self, answer: BaseModel) -> bool:
        """Publish ``answer`` on the request's ``reply_to``; False when there is none."""
        request = self.request
        if request is None or request.reply_to is None:
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
