"""The cache's download server: ``GET /blobs/{sha256}?t={ticket}`` over plain HTTP/1.1 on the
site's LAN, for one-time URLs the cache hands out over the bus.

A ticket is an HMAC (with a key the cache draws at start) of the blob and an expiry time: only
a node the cache answered can download, only that blob, only for ``ticket_ttl_s``. The node
checks the bytes against the ref it asked for, so the server needs no TLS to be trusted for
integrity; the artefact's content is as private as the site's LAN.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import re
import secrets
import time
from typing import Self

import structlog

from fogmesh.artefacts.blobs import BlobStore
from fogmesh.artefacts.config import CacheConfig

__all__ = ["BlobServer"]

log = structlog.get_logger("fogmesh.artefacts")

_REQUEST = re.compile(rb"^GET /blobs/([0-9a-f]{64})\?t=(\d+)\.([0-9a-f]{64}) HTTP/1\.[01]\r?$")
_SEND = 1 << 20
_HEADER_TIMEOUT = 10.0


class BlobServer:
    """Serves the cache's blobs to holders of a ticket; an async context manager."""

    def __init__(self, blobs: BlobStore, config: CacheConfig) -> None:
        self.blobs = blobs
        self.config = config
        self._key = secrets.token_bytes(32)
        self._server: asyncio.Server | None = None
        self.port = config.http_port

    @property
    def base_url(self) -> str:
        """``http://{host}:{port}`` as nodes reach it."""
        host = self.config.advertise_host or self.config.http_host
        return f"http://{host}:{self.port}"

    def url_for(self, digest: str) -> str:
        """A download URL for one blob, valid for ``ticket_ttl_s``."""
        expiry = int(time.time() + self.config.ticket_ttl_s)
        return f"{self.base_url}/blobs/{digest}?t={expiry}.{self._sign(digest, expiry)}"

    def _sign(self, digest: str, expiry: int) -> str:
        return hmac.new(self._key, f"{digest}:{expiry}".encode(), hashlib.sha256).hexdigest()

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(
            self._serve, self.config.http_host, self.config.http_port
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(_HEADER_TIMEOUT):
                line = await reader.readline()
                while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass  # headers: nothing in them matters
            status, digest = self._judge(line.rstrip(b"\n"))
            if digest is None:
                writer.write(f"HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n".encode())
                return
            path = self.blobs.blob(digest)
            size = path.stat().st_size
            writer.write(
                f"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                f"Content-Length: {size}\r\nConnection: close\r\n\r\n".encode()
            )
            with path.open("rb") as source:
                while block := await asyncio.to_thread(source.read, _SEND):
                    writer.write(block)
                    await writer.drain()
        except (TimeoutError, OSError) as exc:
            log.warning("download ended early", error=str(exc))
        finally:
            writer.close()
            with contextlib.suppress(OSError, TimeoutError):
                async with asyncio.timeout(5):
                    await writer.wait_closed()

    def _judge(self, line: bytes) -> tuple[str, str | None]:
        """The status to answer and, when allowed, the blob's digest."""
        match = _REQUEST.match(line)
        if match is None:
            return "400 Bad Request", None
        digest, expiry, mac = match[1].decode(), int(match[2]), match[3].decode()
        if expiry < time.time() or not hmac.compare_digest(mac, self._sign(digest, expiry)):
            log.warning("download refused: bad or old ticket", ref=f"sha256:{digest}")
            return "403 Forbidden", None
        if not self.blobs.has(digest):
            return "404 Not Found", None
        return "200 OK", digest
