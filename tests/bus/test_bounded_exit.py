"""Closing a bus never waits forever for a broker that has stopped reading its connection.

aiomqtt's exit waits, with no deadline, until its DISCONNECT is written; behind megabytes that a
stopped broker does not read (the socket's buffers full), that never happens, and whoever closes
the bus (a service shutting down, a test's teardown) would hang. The bus gives the exit its
``timeout`` and then closes the socket. A real Mosquitto, SIGSTOPped, is the broker that stops
reading.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path

import structlog

from fogmesh.bus import Bus
from fogmesh.protocol import NotConnectedError
from tests.support.brokers import BrokerProcess
from tests.support.buses import bus_config, eventually

PAYLOAD = b"x" * (8 * 1024 * 1024)  # more than loopback's socket buffers hold


async def test_closing_a_bus_whose_broker_stopped_reading_ends(tmp_path: Path) -> None:
    broker = BrokerProcess("mosquitto", tmp_path).start()
    assert broker.proc is not None
    bus = Bus(bus_config(broker, timeout=2.0))
    closing: asyncio.Task[None] | None = None
    try:
        await bus.__aenter__()
        await bus.wait_connected(timeout=20)
        broker.proc.send_signal(signal.SIGSTOP)
        # a QoS 0 publish the broker never reads: the socket fills, the rest waits in paho
        with contextlib.suppress(NotConnectedError, TimeoutError):
            await bus.publish_raw("fm/v1/test/bulk", PAYLOAD, qos=0, queue=False)
        with structlog.testing.capture_logs() as logs:
            closing = asyncio.create_task(bus.__aexit__(None, None, None))
            await eventually(closing.done, timeout=60, what="the bus closed")
        closing.result()
        assert any(e["event"].startswith("broker did not take the disconnect") for e in logs)
    finally:
        if closing is None or not closing.done():
            broker.proc.send_signal(signal.SIGCONT)
        broker.proc.send_signal(signal.SIGCONT)
        broker.kill()
