"""The dashboard's one process: static files, and MQTT over WebSocket piped to the broker.

The page is an MQTT client like any other. This process adds nothing to the protocol: a
WebSocket on ``/mqtt`` (subprotocol ``mqtt``, the only one amqtt's own WebSocket listener takes)
is joined byte for byte to a TCP connection to the broker's listener, so the browser speaks
MQTT 3.1.1 to the broker itself, which authenticates the login and applies its ACLs. Page and
WebSocket share one origin, so a browser needs one address, and the broker may be amqtt,
Mosquitto or the NATS cluster alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import mimetypes
import ssl
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path

import structlog
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

__all__ = ["MQTT_PATH", "STATIC_DIR", "DashboardServer", "DashboardSettings", "missing_assets"]

log = structlog.get_logger("fogmesh.dashboard")

STATIC_DIR = Path(__file__).parent / "static"
MQTT_PATH = "/mqtt"
VENDOR_FILES = ("vendor/mqtt.min.js", "vendor/js-yaml.min.js", "vendor/sha256.min.js")
"""Copied in from their pinned npm packages at set-up (``.ci/dashboard.sh``), never from a CDN."""

_CHUNK = 64 * 1024
_MAX_FRAME = 4 * 1024 * 1024  # an upload's base64 file travels in one MQTT publish


def missing_assets(static: Path = STATIC_DIR) -> list[str]:
    """The vendored browser libraries that are not there (set-up not run)."""
    return [name for name in VENDOR_FILES if not (static / name).is_file()]


@dataclass(frozen=True, slots=True)
class DashboardSettings:
    """Where the dashboard listens and which broker listener it pipes to."""

    broker_host: str = "127.0.0.1"
    broker_port: int = 1883
    host: str = "127.0.0.1"
    port: int = 8080
    broker_tls: ssl.SSLContext | None = None
    connect_timeout_s: float = 10.0
    static: Path = STATIC_DIR


class DashboardServer:
    """Serves the page and pipes ``/mqtt`` WebSockets to the broker; ``run`` until cancelled."""

    def __init__(self, settings: DashboardSettings) -> None:
        self.settings = settings
        self._server: Server | None = None
        self.bound_port: int | None = None

    @property
    def url(self) -> str:
        """The page's address."""
        return f"http://{self.settings.host}:{self.bound_port or self.settings.port}/"

    async def start(self) -> None:
        """Listen (a port of 0 picks a free one, see ``bound_port``)."""
        self._server = await serve(
            self._pipe,
            self.settings.host,
            self.settings.port,
            subprotocols=[Subprotocol("mqtt")],
            process_request=self._http,
            compression=None,  # MQTT frames are small and already binary
            max_size=_MAX_FRAME,
            ping_interval=20,
            ping_timeout=20,
        )
        sockets = list(self._server.sockets)
        self.bound_port = int(sockets[0].getsockname()[1]) if sockets else None
        log.info("dashboard listening", url=self.url, broker=self._broker_address())

    async def run(self) -> None:
        """Start, then serve until cancelled."""
        if self._server is None:
            await self.start()
        assert self._server is not None
        try:
            await self._server.serve_forever()
        finally:
            await self.close()

    async def close(self) -> None:
        """Stop listening and close every open pipe."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    def _broker_address(self) -> str:
        return f"{self.settings.broker_host}:{self.settings.broker_port}"

    def _http(self, connection: ServerConnection, request: Request) -> Response | None:
        """Plain GETs get files; ``/mqtt`` goes on to the WebSocket handshake."""
        path = request.path.split("?", 1)[0]
        if path == MQTT_PATH:
            return None
        name = "index.html" if path in {"/", "/index.html"} else path.lstrip("/")
        target = (self.settings.static / name).resolve()
        root = self.settings.static.resolve()
        if not target.is_relative_to(root) or not target.is_file():
            return connection.respond(HTTPStatus.NOT_FOUND, f"no {path}\n")
        kind = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        if kind.startswith("text/") or kind.endswith("javascript"):
            kind += "; charset=utf-8"
        headers = Headers(
            [
                ("Content-Type", kind),
                ("Cache-Control", "no-cache"),
                # the page talks only to its own origin: no CDN, no other host
                (
                    "Content-Security-Policy",
                    "default-src 'self'; img-src 'self' data: blob:; worker-src 'self' blob:",
                ),
            ]
        )
        body = target.read_bytes()
        headers["Content-Length"] = str(len(body))
        return Response(HTTPStatus.OK, "OK", headers, body)

    async def _pipe(self, ws: ServerConnection) -> None:
        """Join one browser WebSocket to a new TCP connection to the broker."""
        peer = ws.remote_address
        try:
            async with asyncio.timeout(self.settings.connect_timeout_s):
                reader, writer = await asyncio.open_connection(
                    self.settings.broker_host,
                    self.settings.broker_port,
                    ssl=self.settings.broker_tls,
                )
        except (OSError, TimeoutError) as exc:
            log.warning("broker unreachable", broker=self._broker_address(), error=str(exc))
            await ws.close(1011, "broker unreachable")
            return
        log.debug("pipe open", peer=peer)
        try:
            async with asyncio.TaskGroup() as tasks:
                up = tasks.create_task(self._browser_to_broker(ws, writer))
                down = tasks.create_task(self._broker_to_browser(reader, ws))
                await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
                for task in (up, down):
                    task.cancel()
        except* (OSError, ConnectionClosed) as group:
            log.debug("pipe closed", peer=peer, error=str(group.exceptions[0]))
        finally:
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await writer.wait_closed()
            await ws.close()

    @staticmethod
    async def _browser_to_broker(ws: ServerConnection, writer: asyncio.StreamWriter) -> None:
        async for frame in ws:
            writer.write(frame if isinstance(frame, bytes) else frame.encode())
            await writer.drain()

    @staticmethod
    async def _broker_to_browser(reader: asyncio.StreamReader, ws: ServerConnection) -> None:
        while chunk := await reader.read(_CHUNK):
            await ws.send(chunk)
