"""The engine client's HTTP framing and failure handling, against a scripted server.

dockerd cannot be made to send a malformed, truncated or never-ending answer, or an in-band
error at will, so a small asyncio server (over a unix socket and over TCP, the two ways the
client reaches an engine) plays the engine here, byte for byte; everything else about the
client is tested against the real dockerd in ``test_engine.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import io
import json
import os
import struct
import tarfile
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from fogmesh.agent.runtime.engine import (
    NO_ANSWER,
    STREAM_FAILED,
    Engine,
    EngineError,
    EngineUnreachable,
    engine_address,
)
from fogmesh.agent.runtime.engine._client import SPOOL_BYTES

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Scripted:
    """A server that reads each request's head (kept in ``heads``) and runs ``script``."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.heads: list[bytes] = []

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            self.heads.append(await reader.readuntil(b"\r\n\r\n"))
            await self.script(reader, writer)
        finally:
            writer.close()


@pytest.fixture(params=["unix", "tcp"])
async def serve(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Callable[[Script], Awaitable[tuple[Engine, Scripted]]]]:
    servers: list[asyncio.Server] = []

    async def start(script: Script) -> tuple[Engine, Scripted]:
        scripted = Scripted(script)
        if request.param == "unix":
            sock = tmp_path / "engine.sock"
            servers.append(await asyncio.start_unix_server(scripted.serve, sock))
            return Engine(f"unix://{sock}", timeout=5), scripted
        server = await asyncio.start_server(scripted.serve, "127.0.0.1", 0)
        servers.append(server)
        port = server.sockets[0].getsockname()[1]
        return Engine(f"tcp://127.0.0.1:{port}", timeout=5), scripted

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


def answer(writer: asyncio.StreamWriter, head: str, body: bytes = b"") -> None:
    writer.write(head.replace("\n", "\r\n").encode() + b"\r\n" + body)


def _tar(*files: tuple[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as out:
        for name, data in files:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            out.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def chunked(*pieces: bytes) -> bytes:
    out = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(p), p) for p in pieces)
    return out + b"0\r\nX-Trailer: 1\r\n\r\n"


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


async def test_archive_bounded_by_silence_not_as_a_whole(
    serve: Callable[..., Awaitable[tuple[Engine, Scripted]]],
) -> None:
    """An archive that takes far longer than the client's timeout to arrive, but never pauses
    that long, is read whole; one that pauses longer mid-body times out."""
    data = _tar(("a.bin", bytes(range(256)) * 400))
    pieces = [data[i : i + 8192] for i in range(0, len(data), 8192)]
    stall = [False, True]

    async def script(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        stalls = stall.pop(0)
        w.write(f"HTTP/1.1 200 OK\r\nContent-Length: {len(data)}\r\n\r\n".encode())
        for index, piece in enumerate(pieces):
            w.write(piece)
            await w.drain()
            await asyncio.sleep(1.0 if stalls and index == 3 else 0.05)

    engine, _ = await serve(script)
    engine.timeout = 0.3  # the whole answer takes 13 x 0.05 = 0.65 s
    async with engine.get_archive("c", "/data") as archive:
        member = archive.next()
        assert member is not None
        assert member.size == 102_400
    with pytest.raises(TimeoutError):
        async with engine.get_archive("c", "/data"):
            pass


async def test_upload_bounded_by_silence_not_as_a_whole(
    serve: Callable[..., Awaitable[tuple[Engine, Scripted]]],
) -> None:
    """A tar the engine takes far longer than the client's timeout to read, piece by piece,
    is sent whole and answered. Over the unix socket only (the engine's own, whose buffers
    hold about 200 KiB): loopback TCP takes the whole 4 MiB into its buffers at once, and the
    client's last silence is then the engine's reading of all of it, 0.8 s here."""
    data = bytes(4 << 20)
    received: list[int] = []

    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        left = len(data)
        while left:
            left -= len(await r.read(min(left, 256 * 1024)))
            await asyncio.sleep(0.05)
        received.append(len(data) - left)
        answer(w, "HTTP/1.1 200 OK\nContent-Length: 0\n")

    engine, _ = await serve(script)
    if engine.address.path is None:
        pytest.skip("loopback TCP takes the whole body into its buffers at once")
    engine.timeout = 0.3  # the engine reads for at least 16 x 0.05 = 0.8 s
    await engine.put_archive("c", "/data", data)
    assert received == [len(data)]


async def test_archive_spool_closed_on_every_path(
    serve: Callable[..., Awaitable[tuple[Engine, Scripted]]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An archive past SPOOL_BYTES lands in an unlinked temporary file, read back whole; that
    file is closed when the block ends, when the block raises, when the archive is over
    ``max_bytes``, when ``check`` refuses it and when the call is cancelled, even while the
    exception that ended it is kept."""
    spools = tmp_path / "spools"
    spools.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spools))
    payload = bytes(range(256)) * (36 << 10)  # 9 MiB: past SPOOL_BYTES
    data = _tar(("big.bin", payload))
    hold = asyncio.Event()

    async def script(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(f"HTTP/1.1 200 OK\r\nContent-Length: {len(data)}\r\n\r\n".encode())
        w.write(data[:-1024])  # past SPOOL_BYTES, then the end only once told
        await w.drain()
        await hold.wait()
        w.write(data[-1024:])
        await w.drain()

    def open_spools() -> list[str]:
        links = []
        for fd in list(Path("/proc/self/fd").iterdir()):
            with contextlib.suppress(FileNotFoundError):  # the listing's own, closed since
                links.append(str(fd.readlink()))
        return [link for link in links if link.startswith(str(spools))]

    engine, _ = await serve(script)
    hold.set()
    async with engine.get_archive("c", "/data") as archive:
        assert open_spools()  # rolled over to disk
        member = archive.next()
        assert member is not None
        handle = archive.extractfile(member)
        assert handle is not None
        assert handle.read() == payload
    assert open_spools() == []
    kept: list[BaseException] = []  # the exceptions (and so their frames) stay alive
    with pytest.raises(ValueError, match="in the block"):
        async with engine.get_archive("c", "/data"):
            raise ValueError("in the block")
    with pytest.raises(EngineError, match="over") as over:
        async with engine.get_archive("c", "/data", max_bytes=SPOOL_BYTES + 1):
            pass
    kept.append(over.value)
    assert open_spools() == []

    def refuse(_stat: dict[str, object]) -> None:
        raise ValueError("refused")

    with pytest.raises(ValueError, match="refused") as refused:
        async with engine.get_archive("c", "/data", check=refuse):
            pass
    kept.append(refused.value)
    hold.clear()

    async def read_all() -> None:
        async with engine.get_archive("c", "/data"):
            pass

    task = asyncio.create_task(read_all())
    for _ in range(200):  # until the spool has rolled over (no longer than the server's 9 MiB)
        if open_spools():
            break
        await asyncio.sleep(0.01)
    assert open_spools()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert open_spools() == []
    hold.set()


async def test_archive_is_plain_tar(
    serve: Callable[..., Awaitable[tuple[Engine, Scripted]]],
) -> None:
    """dockerd's archives are plain tar: one is opened as such (no compression is tried, so
    the gzip module is never loaded for it), and a compressed one is refused."""
    packed = gzip.compress(_tar(("a.txt", b"a")))

    async def script(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        answer(w, f"HTTP/1.1 200 OK\nContent-Length: {len(packed)}\n", packed)

    engine, _ = await serve(script)
    with pytest.raises(tarfile.ReadError):
        async with engine.get_archive("c", "/data"):
            pass


@pytest.mark.parametrize("change", ["shrink", "grow"])
async def test_upload_sends_exactly_its_announced_length(
    serve: Callable[..., Awaitable[tuple[Engine, Scripted]]], tmp_path: Path, change: str
) -> None:
    """A file that shrinks or grows after its length is announced is an error of the call;
    the engine never gets more bytes than announced."""
    image = tmp_path / "image.tar"
    image.write_bytes(b"x" * 300_000)
    received: list[int] = []

    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        with image.open("r+b") as f:  # after the head (Content-Length) went out
            if change == "shrink":
                f.truncate(100_000)
            else:
                f.seek(0, os.SEEK_END)
                f.write(b"y" * 1000)
        w.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        received.append(len(await r.read()))

    engine, scripted = await serve(script)
    word = "shrank" if change == "shrink" else "grew"
    with pytest.raises(EngineError, match=f"{word} while sent") as caught:
        await engine.load(image, timeout=5)
    assert caught.value.status == NO_ANSWER
    assert b"Content-Length: 300000\r\n" in scripted.heads[0]
    for _ in range(100):
        if received:
            break
        await asyncio.sleep(0.01)
    assert received == [100_000 if change == "shrink" else 300_000]


async def test_file_upload_waits_for_continue(
    serve: Callable[..., Awaitable[tuple[Engine, Scripted]]], tmp_path: Path
) -> None:
    """A file is sent after ``100 Continue`` with its length; an engine that refuses before
    reading it gets none of it, and its refusal is read."""
    image = tmp_path / "image.tar"
    image.write_bytes(b"x" * 300_000)
    received: list[int] = []

    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        if len(received) == 0:
            w.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            received.append(len(await r.readexactly(300_000)))
            loaded = b'{"stream": "Loaded image: a:1\\n"}\n'
            answer(w, f"HTTP/1.1 200 OK\nContent-Length: {len(loaded)}\n", loaded)
        else:
            received.append(0)
            answer(w, "HTTP/1.1 404 Not Found\nContent-Length: 23\n", b'{"message":"no such x"}')

    engine, scripted = await serve(script)
    assert await engine.load(image, timeout=5) == [{"stream": "Loaded image: a:1\n"}]
    assert b"Content-Length: 300000\r\n" in scripted.heads[0]
    assert b"Expect: 100-continue\r\n" in scripted.heads[0]
    with pytest.raises(EngineError) as refused:
        await engine.put_archive("c", "/", image)
    assert (refused.value.status, refused.value.message) == (404, "no such x")
    assert received == [300_000, 0]


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
