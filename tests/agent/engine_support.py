"""The scripted engine of the engine client's HTTP tests, and the answers it writes.

``serve`` (a fixture, once over a unix socket and once over TCP, the two ways the client
reaches an engine) starts a small asyncio server that reads each request's head and then runs
a test's script, and hands back an ``Engine`` pointed at it; ``answer``, ``chunked`` and
``tar_of`` build what a script writes. Shared by ``test_engine_http.py`` and
``test_engine_transfers.py``, which take the fixture by binding it at module level.
"""

from __future__ import annotations

import asyncio
import io
import tarfile
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from fogmesh.agent.runtime.engine import Engine

__all__ = ["Script", "Scripted", "answer", "chunked", "serve", "tar_of"]

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


def tar_of(*files: tuple[str, bytes]) -> bytes:
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
