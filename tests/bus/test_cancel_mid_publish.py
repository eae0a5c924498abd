"""A task cancelled while it publishes ends: the bus never lets a cancellation be swallowed.

aiomqtt bounds its waits with ``asyncio.wait_for``, which on Python 3.11 swallows a cancellation
that arrives as the awaited future completes; a loop publishing heartbeats then ran on after its
cancel, and the teardown awaiting it hung (``tests/scheduler/test_service_ops.py`` in CI).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from pathlib import Path

from fogmesh.bus import Bus
from fogmesh.protocol.node import Heartbeat, Usage
from tests.support.brokers import BrokerProcess
from tests.support.buses import bus_config, eventually

ROUNDS = 150


async def test_a_publishing_task_always_ends_when_cancelled(tmp_path: Path) -> None:
    broker = BrokerProcess("mosquitto", tmp_path).start()
    rng = random.Random(7)
    usage = Usage(cpu_percent=1, memory_used_bytes=1, memory_total_bytes=2,
                  disk_used_bytes=0, disk_total_bytes=1)  # fmt: skip
    try:
        async with Bus(bus_config(broker)) as bus:
            await bus.wait_connected(timeout=20)

            async def beat() -> None:
                seq = 0
                while True:
                    hb = Heartbeat(node="n-1", seq=seq, interval_s=1.0, usage=usage)
                    await bus.publish("fm/v1/nodes/n-1/heartbeat", hb, qos=0)
                    seq += 1

            for _ in range(ROUNDS):
                task = asyncio.create_task(beat())
                await asyncio.sleep(rng.uniform(0, 0.005))
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                    await eventually(task.done, timeout=10, what="the cancelled task ended")
                assert task.done(), "a cancelled publishing task ran on"
    finally:
        broker.kill()
