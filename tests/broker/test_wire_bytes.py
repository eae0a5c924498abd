"""A link counts the bytes on its sockets: exactly what was framed, per direction.

First a client with :func:`fogmesh.broker.wire.count_bytes` publishes known-size QoS 1 messages
to a real Mosquitto, and the counts must equal the MQTT packet sizes. Then a running link
(``python -m fogmesh.broker run``) reaches its cloud broker through a TCP relay that counts
what passes each way: the ``wire_bytes_out`` / ``wire_bytes_in`` the link reports in its
retained status on the site broker must come to exactly the relay's counts.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiomqtt
import pytest

from fogmesh.broker.wire import Publisher, WireBytes, count_bytes
from fogmesh.protocol import LinkStatus, topics
from tests.support.brokers import BrokerProcess, free_port
from tests.support.mesh import MeshProcess, start_wan, wan_mesh
from tests.support.mqtt import client, collect, eventually_delivered, wait_for
from tests.support.relay import CountingRelay

N = 50
TOPIC = "tele/wire"
PAYLOAD = b"x" * 100


def publish_size(topic: str, payload: bytes) -> int:
    """Bytes of an MQTT 3.1.1 QoS 1 PUBLISH: fixed header, topic, packet id, payload."""
    remaining = 2 + len(topic.encode()) + 2 + len(payload)
    length_bytes = 1 if remaining < 128 else 2 if remaining < 16_384 else 3
    return 1 + length_bytes + remaining


async def test_counts_equal_the_mqtt_packets_sent_and_received(tmp_path: Path) -> None:
    broker = BrokerProcess("mosquitto", tmp_path).start()
    try:
        wire = WireBytes()
        c = aiomqtt.Client("127.0.0.1", broker.port, identifier="wire-count", keepalive=60)
        count_bytes(c, wire)
        async with c:
            assert wire.received == 4  # the CONNACK
            connect = wire.sent
            assert connect > 12  # a CONNECT: fixed and variable header, client id
            for i in range(N):
                await c.publish(TOPIC, PAYLOAD, qos=1)
                assert wire.sent == connect + (i + 1) * publish_size(TOPIC, PAYLOAD)
            assert wire.received == 4 + N * 4  # a 4-byte PUBACK each
        assert wire.sent == connect + N * publish_size(TOPIC, PAYLOAD) + 2  # and a DISCONNECT
    finally:
        broker.stop()


async def test_a_batch_is_done_only_when_the_broker_acknowledged_all_of_it(tmp_path: Path) -> None:
    broker = BrokerProcess("mosquitto", tmp_path).start()
    try:
        done = asyncio.Event()
        c = aiomqtt.Client("127.0.0.1", broker.port, identifier="wire-batches", keepalive=60)
        wire = WireBytes()
        count_bytes(c, wire)
        publisher = Publisher(c, done.set)
        async with c:
            before = wire.received
            rows = [(TOPIC, PAYLOAD, 1, False)] * N
            batches = [publisher.publish(rows, 0.0) for _ in range(3)]  # all in flight at once
            assert not any(b.done for b in batches)  # no PUBACK was read yet
            async with asyncio.timeout(30):
                while not all(b.done for b in batches):
                    done.clear()
                    await done.wait()
            assert wire.received - before == 3 * N * 4  # one PUBACK each, nothing more
    finally:
        broker.stop()


async def test_the_link_reports_what_crossed_its_remote_socket(
    tmp_path: Path, procs: list[MeshProcess]
) -> None:
    cloud_port = free_port()
    async with CountingRelay(cloud_port) as relay:
        mesh = wan_mesh(
            tmp_path,
            [{"pattern": "tele/#", "direction": "out", "qos": 1}],
            cloud={"port": cloud_port},
            remote={"port": relay.port},  # the cloud broker, through the relay
        )
        site = start_wan(mesh, procs).ports[0]
        got: list[aiomqtt.Message] = []
        statuses: list[LinkStatus] = []
        async with client(site) as s, client(cloud_port) as c, client(site) as watch:
            await c.subscribe("tele/#", qos=1)
            await watch.subscribe(topics.mesh_link("site", "wan"), qos=1)
            tasks = [asyncio.create_task(collect(c, got))]

            async def watch_status() -> None:
                async for msg in watch.messages:
                    assert isinstance(msg.payload, bytes)
                    statuses.append(LinkStatus.model_validate(json.loads(msg.payload)))

            tasks.append(asyncio.create_task(watch_status()))
            await eventually_delivered(
                lambda: s.publish("tele/warm", b"w", qos=1), lambda: bool(got)
            )
            before = relay.up
            for _ in range(N):
                await s.publish(TOPIC, PAYLOAD, qos=1)
            await wait_for(
                lambda: sum(m.payload == PAYLOAD for m in got) >= N, what="the messages crossed"
            )
            # N PUBLISHes to the cloud (packet ids and all), whatever else the link said
            assert relay.up - before >= N * publish_size(TOPIC, PAYLOAD)

            def matches_relay() -> bool:
                last = statuses[-1] if statuses else None
                return (
                    last is not None
                    and last.wire_bytes_out == relay.up
                    and last.wire_bytes_in == relay.down
                )

            try:
                await wait_for(matches_relay, timeout=30, what="the status to match the relay")
            except AssertionError:
                last = statuses[-1] if statuses else None
                pytest.fail(f"relay up {relay.up} down {relay.down}, status {last}")
            last = statuses[-1]
            # the local side: the site broker delivered the same N messages to the link
            assert last.local_wire_bytes_in >= N * publish_size(TOPIC, PAYLOAD)
            assert last.local_wire_bytes_out > 0
            assert last.path_wire_bytes_out == {}  # one path: no per-path counts
            for task in tasks:
                task.cancel()
