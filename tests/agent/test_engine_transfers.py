"""The engine client's archives and uploads, against a scripted server.

Downloads (``get_archive``: bounded by silence rather than as a whole, spooled to disk past
``SPOOL_BYTES`` and closed on every path, plain tar only) and uploads (``put_archive`` and
``load``: bounded by silence, exactly the announced length, sent after ``100 Continue``), with
the engine played byte for byte by the server of ``engine_support.py``, as in
``test_engine_http.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import os
import tarfile
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from fogmesh.agent.runtime.engine import NO_ANSWER, Engine, EngineError
from fogmesh.agent.runtime.engine._client import SPOOL_BYTES
from tests.agent import engine_support
from tests.agent.engine_support import Scripted, answer, tar_of

serve = engine_support.serve  # the fixture, bound here so pytest finds it


async def test_archive_bounded_by_silence_not_as_a_whole(
    serve: Callable[..., Awaitable[tuple[Engine, Scripted]]],
) -> None:
    """An archive that takes far longer than the client's timeout to arrive, but never pauses
    that long, is read whole; one that pauses longer mid-body times out."""
    data = tar_of(("a.bin", bytes(range(256)) * 400))
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
    data = tar_of(("big.bin", payload))
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
    packed = gzip.compress(tar_of(("a.txt", b"a")))

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
