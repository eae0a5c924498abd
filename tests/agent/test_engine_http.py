"""The engine client's HTTP framing and failure handling, against a scripted server.

dockerd cannot be made to send a malformed, truncated or never-ending answer, or an in-band
error at will, so a small asyncio server (over a unix socket and over TCP, the two ways the
client reaches an engine) plays the engine here, byte for byte; everything else about the
client is tested against the real dockerd in ``test_engine.py``.

Framing, refusals, malformed and silent answers, and engine addresses are tested here;
archives and uploads in ``test_engine_transfers.py``; the scripted server is
``engine_support.py``.
"""

from __future__ import annotations

import asyncio
import json
import struct
from collections.abc import Awaitable, Callable

import pytest

from fogmesh.agent.runtime.engine import (
    NO_ANSWER,
    STREAM_FAILED,
    Engine,
    EngineError,
    EngineUnreachable,
    engine_address,
)
from tests.agent import engine_support
from tests.agent.engine_support import Scripted, answer, chunked

serve = engine_support.serve  # the fixture, bound here so pytest finds it


async def test_chunked_json_split_anywhere(
    serve: Callable[..., Awaitable[tuple[Engine, Scripted]]],
) -> None:
    """A chunked answer with extensions and trailers, its JSON cut mid-token."""

    async def script(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        answer(
            w,
            "HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n",
            chunked(b'{"Api', b'Version": "1.41"}'),
        )

    engine, scripted = await serve(script)
    assert await engine.version() == {"ApiVersion": "1.41"}
    assert scripted.heads[0].startswith(b"GET /version HTTP/1.1\r\n")


async def test_sized_and_until_eof_bodies(
    serve: Callable[..., Awaitable[tuple[Engine, Scripted]]],
) -> None:
    """Content-Length frames the body (what follows is not read); no framing: until EOF."""
    bodies = [
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n[]garbage",
        b'HTTP/1.1 200 OK\r\n\r\n[{"Id": "a"}]',
    ]

    async def script(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(bodies.pop(0))

    engine, _ = await serve(script)
    assert await engine.containers() == []
    assert await engine.containers() == [{"Id": "a"}]


async def test_refusal_carries_status_and_message(
    serve: Callable[..., Awaitable[tuple[Engine, Scripted]]],
) -> None:
    async def script(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        body = json.dumps({"message": "conflict: name taken"}).encode()
        answer(w, f"HTTP/1.1 409 Conflict\nContent-Length: {len(body)}\n", body)

    engine, _ = await serve(script)
    with pytest.raises(EngineError) as caught:
        await engine.create_container({"Image": "x"}, "n")
    assert (caught.value.status, caught.value.message) == (409, "conflict: name taken")


async def test_multiplexed_frames_across_chunks(
    serve: Callable[..., Awaitable[tuple[Engine, Scripted]]],
) -> None:
    """Log frames whose headers and payloads straddle chunk boundaries, in order."""
    frames = b"".join(
        struct.pack(">BxxxL", stream, len(text)) + text
        for stream, text in ((1, b"one\n"), (2, b"two\n"), (1, b"three\n"))
    )

    async def script(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        answer(
            w,
            "HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n",
            chunked(frames[:5], frames[5:14], frames[14:]),
        )

    engine, _ = await serve(script)
    assert await engine.logs("c", tail=3) == "one\ntwo\nthree\n"


async def test_progress_error_in_band(
    serve: Callable[..., Awaitable[tuple[Engine, Scripted]]],
) -> None:
    """A pull answered 200 whose stream then reports an error is an EngineError (500)."""
    lines = (
        b'{"status": "Pulling"}\r\n{"errorDetail": {"message": "denied"}, "error": "denied"}\r\n'
    )

    async def script(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        answer(w, "HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n", chunked(lines))

    engine, scripted = await serve(script)
    with pytest.raises(EngineError) as caught:
        await engine.pull("registry.example/app", timeout=5)
    assert (caught.value.status, caught.value.message) == (STREAM_FAILED, "denied")
    assert b"fromImage=registry.example%2Fapp&tag=latest" in scripted.heads[0]


async def test_malformed_and_cut_answers(
    serve: Callable[..., Awaitable[tuple[Engine, Scripted]]],
) -> None:
    answers = [
        b"SPDY/3 200 OK\r\n\r\n",
        b'HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n{"short":',
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"",
    ]

    async def script(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(answers.pop(0))

    engine, _ = await serve(script)
    with pytest.raises(EngineError, match="not an HTTP") as bad:
        await engine.version()
    assert bad.value.status == NO_ANSWER
    with pytest.raises(EngineUnreachable, match="mid-answer"):
        await engine.version()
    with pytest.raises(EngineError, match="chunk size"):
        await engine.version()
    with pytest.raises(EngineUnreachable, match="before answering"):
        await engine.version()


async def test_silent_engine_is_unreachable(
    serve: Callable[..., Awaitable[tuple[Engine, Scripted]]],
) -> None:
    """An engine that accepts and never answers is as unreachable as one that refuses the
    connection (the reconciler reports the engine down); one that stops mid-answer on a call
    bounded as a whole times out."""

    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        if len(engine_heads) > 1:
            answer(w, "HTTP/1.1 200 OK\nContent-Length: 10\n", b"[")
        await r.read()  # never answers (or never ends its answer)

    engine, scripted = await serve(script)
    engine_heads = scripted.heads
    engine.timeout = 0.3
    with pytest.raises(EngineUnreachable, match=r"did not answer GET /version within 0\.3 s"):
        await engine.version()
    with pytest.raises(TimeoutError):
        await engine.containers()


def test_addresses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    assert engine_address().path == "/var/run/docker.sock"
    assert engine_address("unix:///run/x.sock").path == "/run/x.sock"
    tcp = engine_address("tcp://10.0.0.2:2376")
    assert (tcp.path, tcp.host, tcp.port) == (None, "10.0.0.2", 2376)
    monkeypatch.setenv("DOCKER_HOST", "unix:///run/env.sock")
    assert engine_address().path == "/run/env.sock"
    with pytest.raises(ValueError, match="only unix"):
        engine_address("https://10.0.0.2:2376")
