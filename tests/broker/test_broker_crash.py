"""A SIGKILLed broker loses no message it acknowledged.

A publisher sends QoS 1 messages in bursts (many in flight at once) while the broker process is
SIGKILLed mid-stream and restarted, twice. A persistent-session subscriber, connected whenever
the broker is up, must end up with every message whose PUBACK the publisher saw (duplicates
allowed: delivery is at-least-once).
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import aiomqtt

from tests.support.mesh import MeshProcess, start_alone
from tests.support.mqtt import client, eventually_delivered, wait_for

BURST = 200
KILL_AFTER = (300, 900)  # acknowledged messages before each SIGKILL
TOTAL = 1400


async def _keep_subscribed(port: int, got: set[bytes], stop: asyncio.Event) -> None:
    """A persistent session on ``sink/#``: reconnect whenever the broker is back."""
    while not stop.is_set():
        with contextlib.suppress(aiomqtt.MqttError, OSError):
            async with client(port, ident="crash-sink", clean=False) as sub:
                await sub.subscribe("sink/#", qos=1)
                async for msg in sub.messages:
                    if isinstance(msg.payload, bytes):
                        got.add(msg.payload)
        await asyncio.sleep(0.2)


async def _publish(pub: aiomqtt.Client, n: int, acked: set[bytes]) -> None:
    payload = f"m-{n}".encode()
    await pub.publish("sink/m", payload, qos=1, timeout=10)
    acked.add(payload)


async def test_sigkill_loses_nothing_acknowledged(tmp_path: Path, procs: list[MeshProcess]) -> None:
    broker, port = start_alone(tmp_path, procs)
    got: set[bytes] = set()
    acked: set[bytes] = set()
    stop = asyncio.Event()
    sink = asyncio.create_task(_keep_subscribed(port, got, stop))
    try:
        async with client(port) as probe:  # the subscriber's session exists before we start
            await eventually_delivered(
                lambda: probe.publish("sink/probe", b"probe", qos=1), lambda: b"probe" in got
            )
        kills = list(KILL_AFTER)
        n = 0
        while n < TOTAL:
            with contextlib.suppress(aiomqtt.MqttError, OSError):
                async with client(port, ident="svc-crash-pub") as pub:
                    while n < TOTAL:
                        burst = range(n, min(n + BURST, TOTAL))
                        n = burst[-1] + 1  # unacknowledged ones are the publisher's to resend
                        before = len(acked)
                        sent = asyncio.gather(
                            *(_publish(pub, i, acked) for i in burst), return_exceptions=True
                        )
                        if kills and before >= kills[0]:
                            kills.pop(0)

                            # mid-burst: some PUBACKs are out, the rest of the burst is not
                            def some_acked(b: int = before) -> bool:
                                return len(acked) >= b + 20

                            await wait_for(some_acked, 30, "part of the burst acknowledged")
                            broker.kill()
                            await sent
                            broker.start()
                            break
                        if any(isinstance(r, BaseException) for r in await sent):
                            break
            await asyncio.sleep(0.2)
        assert not kills, "the broker was not killed as often as planned"
        await wait_for(
            lambda: acked <= got,
            60,
            f"every acknowledged message at the persistent subscriber ({len(acked)} acked)",
        )
    finally:
        stop.set()
        sink.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sink
