"""HTTP/1.1 over asyncio streams: as much of it as the Docker engine's API needs.

One connection per request (``Connection: close``; a unix-socket connect costs microseconds and
nothing stale is ever reused). A request body is bytes or a file, sent in pieces with its
``Content-Length`` (a file is never read whole); a large one waits for ``100 Continue``, so a
refusal that comes before the engine reads it is read, not lost with a cut-off upload. A
response body is framed by ``Content-Length``, by ``chunked`` transfer coding, or by the end of
the connection, and is read in pieces (:meth:`Response.chunks`) or whole up to a bound
(:meth:`Response.read`). No wait here has a timeout of its own but the wait for ``100
Continue``: the caller (:class:`~fogmesh.agent.runtime.engine.Engine`) bounds each exchange, as
a whole or by the longest silence, which ``progress`` (called for every piece sent or received)
lets it tell. A file is sent from one open handle: exactly the ``Content-Length`` announced from
that handle's size, and a file that shrinks or grows while it is sent is an :class:`EngineError`
(its request is not sent whole or not as announced), never a mis-framed request.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

from fogmesh.agent.runtime.engine._address import Address
from fogmesh.agent.runtime.engine._errors import NO_ANSWER, EngineError, EngineUnreachable

__all__ = ["PIECE", "Body", "Progress", "Response", "request"]

PIECE = 256 * 1024
"""The size of the pieces a file body is sent in and a response body is read in."""
_LINE_LIMIT = 64 * 1024
"""The longest status, header or chunk-size line accepted."""
_HEAD_LIMIT = 256 * 1024
"""The most bytes of status line and headers accepted."""
_SMALL_BODY = 64 * 1024
"""A body up to this size is sent at once; a larger one (or a file) after ``100 Continue``."""
_CONTINUE_WAIT_S = 1.0
"""How long a large body waits for ``100 Continue`` before it is sent anyway (RFC 9110)."""

Body = bytes | Path | None
Progress = Callable[[], None] | None
"""Called after each piece of a body sent or received (the caller's idle timeout)."""
_Outgoing = bytes | BinaryIO | None


class Response:
    """An answer's status, headers (names in lower case) and body, read once."""

    def __init__(
        self,
        status: int,
        headers: Mapping[str, str],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        bodiless: bool,
        progress: Progress = None,
    ) -> None:
        self.status = status
        self.progress = progress
        self.headers = dict(headers)
        self._reader = reader
        self._writer = writer
        self._read = False
        if bodiless:
            self._body: AsyncIterator[bytes] = _empty()
        elif "chunked" in self.headers.get("transfer-encoding", "").lower():
            self._body = _chunked(reader)
        elif "content-length" in self.headers:
            try:
                length = int(self.headers["content-length"])
            except ValueError:
                raise EngineError(NO_ANSWER, "malformed Content-Length") from None
            self._body = _sized(reader, length)
        else:
            self._body = _until_eof(reader)

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body's pieces as they arrive (once per response)."""
        if self._read:
            raise RuntimeError("the response body was read already")
        self._read = True
        try:
            async for piece in self._body:
                if self.progress is not None:
                    self.progress()
                yield piece
        except asyncio.IncompleteReadError:
            raise EngineUnreachable("the engine closed the connection mid-answer") from None
        except ConnectionError as exc:
            raise EngineUnreachable(f"connection to the engine lost: {exc}") from exc

    async def read(self, limit: int) -> bytes:
        """The whole body; :class:`EngineError` if it is longer than ``limit`` bytes."""
        data = bytearray()
        async for piece in self.chunks():
            data += piece
            if len(data) > limit:
                raise EngineError(NO_ANSWER, f"answer longer than {limit} bytes")
        return bytes(data)

    async def json(self, limit: int) -> Any:
        """The body as JSON (``None`` when it is empty)."""
        data = await self.read(limit)
        if not data.strip():
            return None
        try:
            return json.loads(data)
        except ValueError as exc:
            raise EngineError(NO_ANSWER, f"answer is not JSON: {exc}") from exc

    def close(self) -> None:
        """Close the connection (whatever of the body was not read is dropped)."""
        self._writer.close()


async def request(
    address: Address,
    method: str,
    target: str,
    *,
    body: Body = None,
    content_type: str | None = None,
    progress: Progress = None,
) -> Response:
    """Send ``method target`` (``target``: path and query, already quoted) and read the
    answer's head; the caller closes the :class:`Response`."""
    try:
        if address.path is not None:
            reader, writer = await asyncio.open_unix_connection(address.path, limit=_LINE_LIMIT)
        else:
            reader, writer = await asyncio.open_connection(
                address.host, address.port, limit=_LINE_LIMIT
            )
    except OSError as exc:
        raise EngineUnreachable(f"cannot connect to the engine at {address}: {exc}") from exc
    source: BinaryIO | None = None
    try:
        outgoing: _Outgoing
        size: int | None
        if isinstance(body, Path):
            outgoing = source = body.open("rb")
            size = os.fstat(source.fileno()).st_size  # announced, and sent, from this handle
        elif body is not None:
            outgoing, size = body, len(body)
        else:  # no body: a POST or PUT still says so
            outgoing, size = None, 0 if method in ("POST", "PUT") else None
        expect = source is not None or (size is not None and size > _SMALL_BODY)
        _send_head(writer, address, f"{method} {target}", size, content_type, expect=expect)
        send = _Sender(writer, outgoing, size or 0, str(body), progress)
        if expect:
            status, headers = await _expect_continue(reader, send)
        else:
            await send()
            status, headers = await _final_head(reader)
        bodiless = method == "HEAD" or status in (204, 304)
        return Response(status, headers, reader, writer, bodiless=bodiless, progress=progress)
    except BaseException:
        writer.close()
        raise
    finally:
        if source is not None:
            source.close()


async def _expect_continue(
    reader: asyncio.StreamReader, send: _Sender
) -> tuple[int, dict[str, str]]:
    """Send the body once the engine says ``100 Continue`` (or has said nothing for
    :data:`_CONTINUE_WAIT_S`); an engine that refuses first (a 404 for a container that is
    gone) answers without the body, which it would otherwise cut off mid-upload, losing its
    answer with the connection."""
    first = asyncio.ensure_future(_read_head(reader))
    try:
        done, _ = await asyncio.wait({first}, timeout=_CONTINUE_WAIT_S)
        if done:
            status, headers = first.result()
            if status != 100:
                return status, headers
            await send()
            return await _final_head(reader)
        await send()  # the engine may read the body without saying 100
        status, headers = await first
        return (await _final_head(reader)) if status == 100 else (status, headers)
    finally:
        if not first.done():
            first.cancel()


def _send_head(
    writer: asyncio.StreamWriter,
    address: Address,
    line: str,
    size: int | None,
    content_type: str | None,
    *,
    expect: bool,
) -> None:
    host = "docker" if address.path is not None else f"{address.host}:{address.port}"
    head = [f"{line} HTTP/1.1", f"Host: {host}", "User-Agent: fogmesh-agent"]
    head.append("Connection: close")
    if size is not None:
        head.append(f"Content-Length: {size}")
    if content_type is not None:
        head.append(f"Content-Type: {content_type}")
    if expect:
        head.append("Expect: 100-continue")
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))


class _Sender:
    """Sends a request body of exactly ``size`` bytes, in pieces of :data:`PIECE`."""

    def __init__(
        self,
        writer: asyncio.StreamWriter,
        body: _Outgoing,
        size: int,
        name: str,
        progress: Progress,
    ) -> None:
        self.writer = writer
        self.body = body
        self.size = size
        self.name = name
        self.progress = progress

    async def __call__(self) -> None:
        try:
            if isinstance(self.body, bytes):
                view = memoryview(self.body)
                for start in range(0, len(view), PIECE):
                    await self._put(view[start : start + PIECE])
            elif self.body is not None:
                await self._put_file(self.body)
            await self.writer.drain()
        except ConnectionError:
            # the engine closed while taking the body: what it answered (if it still can be
            # read) says why, else the head's read reports the lost connection
            return

    async def _put(self, piece: bytes | memoryview) -> None:
        self.writer.write(piece)
        await self.writer.drain()
        if self.progress is not None:
            self.progress()

    async def _put_file(self, source: BinaryIO) -> None:
        left = self.size
        while left > 0:
            piece = await asyncio.to_thread(source.read, min(left, PIECE))
            if not piece:
                raise EngineError(
                    NO_ANSWER,
                    f"{self.name} shrank while sent: {self.size - left} of {self.size}"
                    " bytes announced",
                )
            left -= len(piece)
            await self._put(piece)
        if await asyncio.to_thread(source.read, 1):
            raise EngineError(
                NO_ANSWER, f"{self.name} grew while sent: more than the {self.size} bytes announced"
            )


async def _final_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    """The head of the final answer, past any interim (1xx) one."""
    status, headers = await _read_head(reader)
    while 100 <= status < 200:
        status, headers = await _read_head(reader)
    return status, headers


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    try:
        line = await reader.readuntil(b"\r\n")
        version, _, rest = line.decode("latin-1").partition(" ")
        if not version.startswith("HTTP/1."):
            raise EngineError(NO_ANSWER, f"not an HTTP/1.x answer: {line[:80]!r}")
        status = int(rest.split(" ", 1)[0])
        headers: dict[str, str] = {}
        size = len(line)
        while (line := await reader.readuntil(b"\r\n")) != b"\r\n":
            size += len(line)
            if size > _HEAD_LIMIT:
                raise EngineError(NO_ANSWER, "answer headers too long")
            name, sep, value = line.decode("latin-1").partition(":")
            if not sep:
                raise EngineError(NO_ANSWER, f"malformed header line {line[:80]!r}")
            headers[name.strip().lower()] = value.strip()
    except (asyncio.IncompleteReadError, ConnectionError):
        raise EngineUnreachable("the engine closed the connection before answering") from None
    except asyncio.LimitOverrunError:
        raise EngineError(NO_ANSWER, "answer header line too long") from None
    except ValueError as exc:
        raise EngineError(NO_ANSWER, f"malformed status line: {exc}") from exc
    return status, headers


async def _empty() -> AsyncIterator[bytes]:
    return
    yield  # an async generator that yields nothing


async def _sized(reader: asyncio.StreamReader, length: int) -> AsyncIterator[bytes]:
    left = length
    while left > 0:
        piece = await reader.read(min(left, PIECE))
        if not piece:
            raise asyncio.IncompleteReadError(b"", left)
        left -= len(piece)
        yield piece


async def _until_eof(reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
    while piece := await reader.read(PIECE):
        yield piece


async def _chunked(reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
    while True:
        try:
            line = await reader.readuntil(b"\r\n")
            size = int(line.split(b";", 1)[0].strip(), 16)
        except asyncio.LimitOverrunError:
            raise EngineError(NO_ANSWER, "chunk-size line too long") from None
        except ValueError:
            raise EngineError(NO_ANSWER, "malformed chunk size") from None
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers, ignored
                pass
            return
        async for piece in _sized(reader, size):
            yield piece
        if await reader.readexactly(2) != b"\r\n":
            raise EngineError(NO_ANSWER, "chunk not followed by CRLF")
