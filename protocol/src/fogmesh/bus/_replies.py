"""Turning bytes into replies and bad input into error replies: the bus client's edges."""

from __future__ import annotations

import asyncio
import json
from typing import Any, TypeVar

import structlog
from pydantic import ValidationError

from fogmesh.protocol import (
    BusError,
    ErrorReply,
    RemoteError,
    Reply,
    check_topic,
    error_info_from_validation,
)

__all__ = ["decode_reply", "invalid_payload_reply", "log_task_failure", "payload_bytes"]

log = structlog.get_logger("fogmesh.bus")

R = TypeVar("R", bound=Reply)


def invalid_payload_reply(
    payload: bytes, exc: ValidationError, *, source: str
) -> tuple[str, ErrorReply] | None:
    """Log an invalid payload; return (reply_to, error reply) when the JSON says where to."""
    info = error_info_from_validation(exc)
    log.warning("invalid payload", reason=info.message, size=len(payload))
    try:
        data = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    reply_to, correlation_id = data.get("reply_to"), data.get("correlation_id")
    if not isinstance(reply_to, str) or not isinstance(correlation_id, str):
        return None
    try:
        check_topic(reply_to)
        answer = ErrorReply(correlation_id=correlation_id[:128] or "-", source=source, error=info)
    except (ValueError, ValidationError):
        log.warning("invalid payload has an unusable reply_to", reply_to=reply_to[:200])
        return None
    return reply_to, answer


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


def log_task_failure(task: asyncio.Task[None]) -> None:
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        log.error("background bus task failed", task=task.get_name(), error=repr(exc))
