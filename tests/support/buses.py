"""Small helpers for tests that use the bus: a config for a test broker, and waiting."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

from fogmesh.bus import BusConfig
from tests.support.brokers import BrokerProcess

__all__ = ["bus_config", "eventually", "unique"]


def unique(prefix: str = "t") -> str:
    """A unique id for a test's clients and topics."""
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def bus_config(broker: BrokerProcess, client_id: str | None = None, **kwargs: object) -> BusConfig:
    """A :class:`BusConfig` for ``broker`` with fast reconnects, as tests want."""
    client_id = client_id or unique("c")
    settings: dict[str, object] = {
        "host": "127.0.0.1",
        "port": broker.port,
        "client_id": client_id,
        # amqtt keeps no messages for anonymous sessions, and no fogmesh client is anonymous.
        "username": client_id,
        "reconnect_base": 0.1,
        "reconnect_cap": 1.0,
        "keepalive": 5,
    }
    settings.update(kwargs)
    return BusConfig(**settings)  # type: ignore[arg-type]


async def eventually(predicate: Callable[[], bool], timeout: float = 20.0, what: str = "") -> None:
    """Wait until ``predicate()`` is true; fail after ``timeout`` seconds (generous on purpose)."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)
    assert predicate(), what
