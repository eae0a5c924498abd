"""Cloud broker killed; 1,000 QoS 1 messages published at the site meanwhile; all arrive in order.

Also proves the cloud broker's own persistence: the cloud subscriber's persistent session and
subscription survive the SIGKILL and restart of the cloud broker.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiomqtt

from tests.support.mesh import MeshProcess, cloud_killed
from tests.support.mqtt import client, collect, wait_for

N = 1000


def _payloads(msgs: list[aiomqtt.Message]) -> list[bytes]:
    out = [m.payload for m in msgs]
    return [p for p in out if isinstance(p, bytes) and p.startswith(b"m-")]


def _check_order(payloads: list[bytes]) -> tuple[int, int]:
    """(distinct, duplicates); asserts first arrivals come in publish order."""
    seen: set[int] = set()
    last = -1
    dups = 0
    for p in payloads:
        n = int(p.split(b"-")[1])
        if n in seen:
            dups += 1
            continue
        assert n > last, f"message {n} arrived after {last}"
        seen.add(n)
        last = n
    return len(seen), dups


async def test_cloud_down_then_back_loses_nothing(tmp_path: Path, procs: list[MeshProcess]) -> None:
    got: list[aiomqtt.Message] = []
    wan = await cloud_killed(tmp_path, procs, got)
    site, cloud = wan.ports
    async with client(site) as s:
        for i in range(N):
            await s.publish("tele/m", f"m-{i}".encode(), qos=1)
    await asyncio.sleep(1.0)  # the link notices and queues; nothing is acked by the cloud yet
    wan.cloud.start()

    got.clear()
    async with client(cloud, ident="cloud-sub", clean=False) as c:
        task = asyncio.create_task(collect(c, got))
        try:
            await wait_for(lambda: len(_payloads(got)) >= N, timeout=90, what="1000 messages")
        finally:
            print("received", len(got), "first", _payloads(got)[:3])
        task.cancel()
    distinct, dups = _check_order(_payloads(got))
    assert distinct == N
    print(f"partition: {N} delivered in order, {dups} duplicates (QoS 1 allows them)")
