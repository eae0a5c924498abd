"""How the CLI reaches the bus: settings from flags and the environment, and a connection
that fails fast with a clear sentence when the broker cannot be reached."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass

from fogmesh.bus import Bus, BusConfig
from fogmesh.cli.errors import CliError
from fogmesh.protocol import new_id

__all__ = ["CliSettings", "connect"]


@dataclass(frozen=True, slots=True)
class CliSettings:
    """Where the CLI connects and as whom."""

    host: str = "127.0.0.1"
    port: int = 1883
    tenant: str = "demo"
    username: str | None = None
    password: str | None = None
    timeout: float = 10.0

    @classmethod
    def from_env(cls) -> CliSettings:
        """Defaults from ``FOGMESH_BROKER`` (host:port), ``FOGMESH_TENANT``, ``FOGMESH_USERNAME``
        and ``FOGMESH_PASSWORD``."""
        host, port = "127.0.0.1", 1883
        broker = os.environ.get("FOGMESH_BROKER", "")
        if broker:
            host, _, port_text = broker.rpartition(":")
            if not host or not port_text.isdigit():
                raise CliError(f"FOGMESH_BROKER must be host:port, not {broker!r}", code=2)
            port = int(port_text)
        return cls(
            host=host,
            port=port,
            tenant=os.environ.get("FOGMESH_TENANT", "demo"),
            username=os.environ.get("FOGMESH_USERNAME") or None,
            password=os.environ.get("FOGMESH_PASSWORD") or None,
        )


async def _probe(host: str, port: int, timeout: float) -> None:
    try:
        async with asyncio.timeout(timeout):
            _reader, writer = await asyncio.open_connection(host, port)
    except TimeoutError as exc:
        raise CliError(f"cannot reach the broker at {host}:{port}: timed out", code=3) from exc
    except OSError as exc:
        reason = (
            "connection refused (is the broker running?)"
            if isinstance(exc, ConnectionRefusedError)
            else exc.strerror or str(exc)
        )
        raise CliError(f"cannot reach the broker at {host}:{port}: {reason}", code=3) from exc
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


@contextlib.asynccontextmanager
async def connect(settings: CliSettings) -> AsyncIterator[Bus]:
    """A connected :class:`Bus` (a throw-away clean session), or a :class:`CliError`."""
    await _probe(settings.host, settings.port, settings.timeout)
    # a node or tenant account owns only client ids that start with its name
    client_id = f"{settings.username or 'cli'}-cli-{new_id()[:12]}"
    config = BusConfig(
        host=settings.host,
        port=settings.port,
        client_id=client_id,
        username=settings.username or client_id,
        password=settings.password,
        clean_session=True,
        timeout=settings.timeout,
    )
    async with Bus(config) as bus:
        try:
            await bus.wait_connected(timeout=settings.timeout)
        except TimeoutError as exc:
            raise CliError(
                f"the broker at {settings.host}:{settings.port} did not accept the connection "
                "(wrong credentials?)",
                code=3,
            ) from exc
        yield bus
