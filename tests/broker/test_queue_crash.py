"""A SIGKILLed broker keeps the offline queue it was still delivering.

A persistent-session subscriber is away while QoS 1 messages are queued for it. It connects
with a client that never acknowledges (paho's manual ack, never called), the broker starts
delivering the queue and is SIGKILLed. After a restart the subscriber connects again and must
get every message it never acknowledged, in the order they were published. And the other
side: what the subscriber did acknowledge leaves the disk (batched), so a restart does not
deliver it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from pathlib import Path

import aiomqtt

from fogmesh.bus._paho import paho_of
from tests.support.mesh import MeshProcess, start_alone
from tests.support.mqtt import client, wait_for

QUEUED = 60
SINK = "svc-queue-sink"


def _queued_rows(tmp: Path) -> int:
    """Rows of the hub's offline queues on disk (the broker's SQLite, read beside it)."""
    with contextlib.closing(sqlite3.connect(tmp / "hub" / "broker.sqlite", timeout=10)) as db:
        return int(db.execute("SELECT count(*) FROM queued").fetchone()[0])


async def _queue_for_sink(port: int, sent: list[bytes]) -> None:
    """Give ``SINK`` a persistent session on ``sink/#``, then queue ``sent`` while it is away."""
    async with client(port, ident=SINK, clean=False) as sub:
        await sub.subscribe("sink/#", qos=1)
    async with client(port) as pub:
        for payload in sent:
            await pub.publish("sink/q", payload, qos=1, timeout=10)


async def _receive(port: int, got: list[bytes], *, ack: bool) -> None:
    """Subscribe again on the persistent session; acknowledge what arrives only if ``ack``."""
    sub = client(port, ident=SINK, clean=False)
    if not ack:
        # aiomqtt has no manual ack; its paho client does: PUBACKs are sent only on ack()
        paho_of(sub).manual_ack_set(True)
    async with sub:
        async for msg in sub.messages:
            if isinstance(msg.payload, bytes) and msg.topic.matches("sink/#"):
                got.append(msg.payload)


async def test_unacknowledged_queue_survives_sigkill(
    tmp_path: Path, procs: list[MeshProcess]
) -> None:
    broker, port = start_alone(tmp_path, procs)
    sent = [f"q-{n}".encode() for n in range(QUEUED)]
    await _queue_for_sink(port, sent)

    unacked: list[bytes] = []
    first = asyncio.create_task(_receive(port, unacked, ack=False))
    try:
        await wait_for(lambda: bool(unacked), 60, "the queue's delivery started")
        broker.kill()
    finally:
        first.cancel()
        with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
            await first

    broker.start()
    got: list[bytes] = []
    second = asyncio.create_task(_receive(port, got, ack=True))
    try:
        await wait_for(
            lambda: set(sent) <= set(got),
            60,
            f"every unacknowledged queued message after the restart ({len(set(got))} got)",
        )
    finally:
        second.cancel()
        with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
            await second
    firsts = [p for i, p in enumerate(got) if p not in got[:i]]
    assert firsts == sent, "queued messages arrived out of order"


async def test_acknowledged_queue_rows_leave_disk(tmp_path: Path, procs: list[MeshProcess]) -> None:
    broker, port = start_alone(tmp_path, procs)
    sent = [f"a-{n}".encode() for n in range(QUEUED)]
    await _queue_for_sink(port, sent)
    await wait_for(lambda: _queued_rows(tmp_path) == QUEUED, 60, "the queue on disk")

    got: list[bytes] = []
    first = asyncio.create_task(_receive(port, got, ack=True))
    try:
        await wait_for(lambda: set(sent) <= set(got), 60, "the queue delivered")
        await wait_for(lambda: _queued_rows(tmp_path) == 0, 60, "acknowledged rows deleted")
    finally:
        first.cancel()
        with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
            await first

    broker.kill()
    broker.start()
    again: list[bytes] = []
    second = asyncio.create_task(_receive(port, again, ack=True))
    try:
        async with client(port) as pub:  # a marker behind anything the restart would replay
            await pub.publish("sink/marker", b"marker", qos=1, timeout=10)
        await wait_for(lambda: b"marker" in again, 60, "the marker after the restart")
    finally:
        second.cancel()
        with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
            await second
    assert not set(again) & set(sent), "acknowledged queued messages were delivered again"
