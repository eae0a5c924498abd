"""The link's reader acknowledges a read's messages only once ``take`` has committed them.

A client with a :class:`fogmesh.broker.link_reader.PassReader` on a real Mosquitto: while its
``take`` fails, nothing is acknowledged and the reader raises; after a reconnect on the same
persistent session the broker delivers the message again, and a ``take`` that succeeds gets
it, with a whole burst handed over in few takes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import aiomqtt
import pytest
from paho.mqtt.client import MQTTMessage

from fogmesh.broker.link_reader import PassReader
from fogmesh.bus import _paho, drain_reads
from tests.support.brokers import BrokerProcess

N = 500


def _reader_client(
    port: int, take: Callable[[list[MQTTMessage]], None]
) -> tuple[aiomqtt.Client, PassReader]:
    c = aiomqtt.Client("127.0.0.1", port, identifier="link-reader", clean_session=False)
    _paho.set_manual_ack(c)
    drain_reads(_paho.paho_of(c))
    return c, PassReader(c, take)


async def test_a_failed_take_acknowledges_nothing(tmp_path: Path) -> None:
    broker = BrokerProcess("mosquitto", tmp_path).start()
    try:

        def refuse(_burst: list[MQTTMessage]) -> None:
            raise OSError("disk full")

        c, reader = _reader_client(broker.port, refuse)
        async with c, aiomqtt.Client("127.0.0.1", broker.port, identifier="pub") as pub:
            await c.subscribe("t/#", qos=1)
            await pub.publish("t/x", b"kept", qos=1)
            with pytest.raises(OSError, match="disk full"):
                async with asyncio.timeout(30):
                    await reader.run(c)
            await pub.publish("t/x", b"after", qos=1)  # arrives after the failure: not acked
            await asyncio.sleep(0)

        takes: list[list[bytes]] = []
        c, reader = _reader_client(
            broker.port, lambda b: takes.append([bytes(m.payload) for m in b])
        )
        async with c:
            async with asyncio.timeout(30):
                while b"after" not in [p for t in takes for p in t]:
                    await asyncio.sleep(0.05)
        got = [p for t in takes for p in t]
        assert got[:2] == [b"kept", b"after"], got
    finally:
        broker.stop()


async def test_a_burst_is_taken_per_read_and_acknowledged(tmp_path: Path) -> None:
    broker = BrokerProcess("mosquitto", tmp_path).start()
    try:
        takes: list[int] = []
        c, _ = _reader_client(broker.port, lambda b: takes.append(len(b)))
        async with c, aiomqtt.Client("127.0.0.1", broker.port, identifier="pub") as pub:
            await c.subscribe("t/#", qos=1)
            await asyncio.gather(*(pub.publish("t/b", str(i).encode(), qos=1) for i in range(N)))
            async with asyncio.timeout(30):
                while sum(takes) < N:
                    await asyncio.sleep(0.05)
        assert sum(takes) == N
        assert len(takes) < N, "every message had a take of its own"
        # all acknowledged: the kept session hands nothing back
        again: list[int] = []
        c, _ = _reader_client(broker.port, lambda b: again.append(len(b)))
        async with c, aiomqtt.Client("127.0.0.1", broker.port, identifier="pub2") as pub:
            await pub.publish("t/b", b"marker", qos=1)
            async with asyncio.timeout(30):
                while not again:
                    await asyncio.sleep(0.05)
        assert again == [1]
    finally:
        broker.stop()
