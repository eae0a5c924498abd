"""Turning bytes into replies and bad input into error replies: the bus client's edges."""

from __future__ import annotations

import re
from typing import Any, TypeVar

import pydantic_core
import structlog
from pydantic import ValidationError

from fogmesh.bus._reply_rule import reply_allowed
from fogmesh.protocol import (
    BusError,
    ErrorInfo,
    ErrorReply,
    RemoteError,
    Reply,
    error_info_from_validation,
)

__all__ = [
    "decode_reply",
    "envelope_hint",
    "invalid_payload_reply",
    "payload_bytes",
    "refusal_reply",
    "where_to_answer",
]

log = structlog.get_logger("fogmesh.bus")

R = TypeVar("R", bound=Reply)


# A JSON string value without escapes: enough for the ids and topics a reply needs.
_HINT = re.compile(rb'"(reply_to|correlation_id)"\s*:\s*"([^"\\\x00-\x1f]{1,1024})"')
_SCAN_BYTES = 64 * 1024  # the envelope leads; a hostile sender's tail is scanned as well


def envelope_hint(payload: bytes) -> tuple[str | None, str | None]:
    """``(reply_to, correlation_id)`` of a payload the parser cannot read, by a bounded scan.

    For JSON nested too deep for the parser, or too big to parse: only the first and last
    64 KiB are read, and only plain string values are taken, so the scan costs little whatever
    the payload holds. The values are still checked before anything is published.
    """
    found: dict[bytes, str] = {}
    window = payload if len(payload) <= 2 * _SCAN_BYTES else (
        payload[:_SCAN_BYTES] + b"\n" + payload[-_SCAN_BYTES:]
    )  # fmt: skip
    for match in _HINT.finditer(window):
        found.setdefault(match.group(1), match.group(2).decode("utf-8", "replace"))
    return found.get(b"reply_to"), found.get(b"correlation_id")


def where_to_answer(payload: bytes) -> tuple[str | None, str | None]:
    """``(reply_to, correlation_id)`` of a payload that failed validation, when it says."""
    try:
        data = pydantic_core.from_json(payload)
    except ValueError:  # not JSON, or nested deeper than the parser goes
        return envelope_hint(payload)
    if not isinstance(data, dict):
        return None, None
    reply_to, correlation_id = data.get("reply_to"), data.get("correlation_id")
    return (
        reply_to if isinstance(reply_to, str) else None,
        correlation_id if isinstance(correlation_id, str) else None,
    )


def refusal_reply(
    payload: bytes,
    info: ErrorInfo,
    *,
    source: str,
    topic: str,
    where: tuple[str | None, str | None] | None = None,
) -> tuple[str, ErrorReply] | None:
    """(reply_to, error reply) for a request the bus refuses before any handler sees it.

    ``where`` is the (reply_to, correlation_id) when the caller already knows them; else they
    are read from ``payload``. None when there is no usable reply topic (logged).
    """
    reply_to, correlation_id = where if where is not None else where_to_answer(payload)
    if reply_to is None or correlation_id is None:
        return None
    if not reply_allowed(topic, reply_to):
        log.warning("reply_to refused by the reply rule", reply_to=reply_to[:200])
        return None
    try:
        answer = ErrorReply(correlation_id=correlation_id[:128] or "-", source=source, error=info)
    except ValidationError:
        return None
    return reply_to, answer


def invalid_payload_reply(
    payload: bytes, exc: ValidationError, *, source: str, topic: str
) -> tuple[str, ErrorReply] | None:
    """Log an invalid payload; return (reply_to, error reply) when the payload says where to."""
    info = error_info_from_validation(exc)
    log.warning("invalid payload", reason=info.message[:500], size=len(payload))
    return refusal_reply(payload, info, source=source, topic=topic)


def payload_bytes(payload: Any) -> bytes:
    if isinstance(payload, bytes | bytearray):
        return bytes(payload)
    if payload is None:
        return b""
    return str(payload).encode()


def decode_reply(data: dict[str, Any], reply_model: type[R]) -> R:
    if data.get("ok") is False:
        try:
            error = ErrorReply.model_validate(data)
        except ValidationError as exc:
            raise BusError(f"malformed error reply: {exc}") from exc
        raise RemoteError(error.error)
    try:
        return reply_model.model_validate(data)
    except ValidationError as exc:
        raise BusError(f"reply does not match {reply_model.__name__}: {exc}") from exc
