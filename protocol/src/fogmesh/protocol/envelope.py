"""The envelope every message carries, and the request / reply pair built on it.

amqtt speaks MQTT 3.1.1 only, so request / reply cannot use MQTT 5's response topic or
correlation data: they live here, in the JSON body.
"""

from __future__ import annotations

import os
import time
from typing import Annotated, Any, Self

from pydantic import AfterValidator, ConfigDict, Field, ValidationError

from fogmesh.protocol._ids import Ident, check_topic
from fogmesh.protocol._model import Model
from fogmesh.protocol.errors import ErrorCode, ErrorInfo, FieldError

__all__ = [
    "SCHEMA_VERSION",
    "Envelope",
    "ErrorReply",
    "Reply",
    "Request",
    "TopicName",
    "error_info_from_validation",
    "new_id",
]

SCHEMA_VERSION = 1


def new_id() -> str:
    """A fresh message id (32 hex characters): ``uuid.uuid4().hex``'s format and randomness
    (16 bytes of ``os.urandom``, version 4, RFC 4122 variant) without building a UUID object."""
    b = bytearray(os.urandom(16))
    b[6] = b[6] & 0x0F | 0x40
    b[8] = b[8] & 0x3F | 0x80
    return b.hex()


def _topic_name(value: str) -> str:
    try:
        return check_topic(value)
    except ValueError as exc:
        raise ValueError(str(exc)) from exc


TopicName = Annotated[str, AfterValidator(_topic_name)]
"""A concrete topic (no wildcards): what ``reply_to`` must be."""


class Envelope(Model):
    """Fields common to every fogmesh message.

    Unknown fields are refused (``extra='forbid'``) so a typo in a hand-written command is an
    error reply rather than a silently ignored setting. Its validator, like every model's, is
    built on first use (:class:`~fogmesh.protocol._model.Model`).
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    schema_version: int = Field(default=SCHEMA_VERSION, ge=1, le=SCHEMA_VERSION)
    id: str = Field(default_factory=new_id, min_length=1, max_length=128)
    ts: float = Field(default_factory=time.time, description="unix time the message was made")
    source: str = Field(default="", max_length=256, description="who sent it (client id)")
    tenant: Ident | None = Field(default=None, description="the tenant it concerns, if any")


class Request(Envelope):
    """A message that expects an answer on ``reply_to``."""

    correlation_id: str = Field(default_factory=new_id, min_length=1, max_length=128)
    reply_to: TopicName | None = None


class Reply(Envelope):
    """A successful answer. Subclasses add the payload; ``ok`` is always true."""

    correlation_id: str = Field(min_length=1, max_length=128)
    ok: bool = True

    @classmethod
    def to(cls, request: Request, **fields: Any) -> Self:
        """A reply to ``request``: same correlation id and tenant."""
        fields.setdefault("tenant", request.tenant)
        return cls(correlation_id=request.correlation_id, **fields)


class ErrorReply(Envelope):
    """A failed answer: ``ok`` is false and ``error`` says why."""

    correlation_id: str = Field(min_length=1, max_length=128)
    ok: bool = False
    error: ErrorInfo


def error_info_from_validation(
    exc: ValidationError, *, code: ErrorCode = ErrorCode.INVALID_PAYLOAD
) -> ErrorInfo:
    """Turn a pydantic :class:`ValidationError` into an :class:`ErrorInfo` naming each field."""
    fields = [
        FieldError(loc=".".join(str(p) for p in err["loc"]) or "(root)", msg=err["msg"])
        for err in exc.errors(include_url=False)
    ]
    summary = "; ".join(f"{f.loc}: {f.msg}" for f in fields[:5])
    return ErrorInfo(code=code, message=f"invalid {exc.title}: {summary}", fields=fields)
