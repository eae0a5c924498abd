"""The engine's streamed bodies: its multiplexed log stream and its JSON progress lines."""

from __future__ import annotations

import json
import struct
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from typing import Any

from fogmesh.agent.runtime.engine._errors import NO_ANSWER, EngineError

__all__ = ["STREAM_FAILED", "demux", "json_lines", "raise_stream_error"]

STREAM_FAILED = 500
"""The status of an :class:`EngineError` for an error the engine reported inside a stream."""
_FRAME = struct.Struct(">BxxxL")
_LINE_LIMIT = 1 << 20


async def demux(chunks: AsyncIterable[bytes]) -> AsyncIterator[tuple[int, bytes]]:
    """The frames of a multiplexed stream (a container without a TTY: its logs, attach):
    ``(stream, payload)`` with stream 0 stdin, 1 stdout, 2 stderr. Each frame is an 8-byte
    header (stream, 3 zero bytes, big-endian payload length) and its payload."""
    buf = bytearray()
    async for chunk in chunks:
        buf += chunk
        while len(buf) >= _FRAME.size:
            stream, size = _FRAME.unpack_from(buf)
            end = _FRAME.size + size
            if len(buf) < end:
                break
            payload = bytes(buf[_FRAME.size : end])
            del buf[:end]
            if payload:
                yield stream, payload
    if buf:
        raise EngineError(NO_ANSWER, "multiplexed stream ends inside a frame")


async def json_lines(chunks: AsyncIterable[bytes]) -> AsyncIterator[Any]:
    """The JSON values of a body of one value per line (pull and load progress, stats)."""
    buf = b""
    async for chunk in chunks:
        buf += chunk
        *lines, buf = buf.split(b"\n")
        if len(buf) > _LINE_LIMIT:
            raise EngineError(NO_ANSWER, f"a progress line longer than {_LINE_LIMIT} bytes")
        for line in lines:
            if line.strip():
                yield _decode(line)
    if buf.strip():
        yield _decode(buf)


def raise_stream_error(message: Any) -> None:
    """Raise :class:`EngineError` (:data:`STREAM_FAILED`) if a progress message reports an
    error: the engine answers 200 and then says ``{"error": ..., "errorDetail": {...}}``."""
    if not isinstance(message, Mapping) or not ("error" in message or "errorDetail" in message):
        return
    detail = message.get("errorDetail")
    text = (detail.get("message") if isinstance(detail, Mapping) else None) or message.get("error")
    raise EngineError(STREAM_FAILED, str(text or "error in the engine's progress stream"))


def _decode(line: bytes) -> Any:
    try:
        return json.loads(line)
    except ValueError as exc:
        raise EngineError(NO_ANSWER, f"a progress line is not JSON: {line[:80]!r}") from exc
