"""The bridge process is SIGKILLed mid-stream and restarted: nothing acknowledged is lost.

Brokers and bridge run as separate processes here (``--no-links`` / ``--no-broker``), so the
kill hits only the link: what it had taken from the site but not yet delivered must come from
its disk queue, and what the site had not yet handed over must be redelivered by the site broker
(the link acknowledges only after the message is on disk).
"""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import aiomqtt

from tests.support.mesh import MeshProcess, site_cloud_mesh
from tests.support.mesh_file import port_of
from tests.support.mqtt import client, collect, eventually_delivered, wait_for

N = 1000


def _numbers(msgs: list[aiomqtt.Message]) -> list[int]:
    return [int(p[2:]) for m in msgs if isinstance(p := m.payload, bytes) and p.startswith(b"k-")]


async def test_bridge_killed_mid_stream(tmp_path: Path, procs: list[MeshProcess]) -> None:
    mesh = site_cloud_mesh(tmp_path)
    procs.append(MeshProcess(mesh, "cloud", ["--no-links"]).start())
    procs.append(MeshProcess(mesh, "site", ["--no-links"]).start())
    bridge = MeshProcess(mesh, "site", ["--no-broker"]).start()
    procs.append(bridge)
    site, cloud = port_of(mesh, "site"), port_of(mesh, "cloud")

    got: list[aiomqtt.Message] = []
    async with client(cloud) as c, client(site) as s:
        await c.subscribe("tele/#", qos=1)
        task = asyncio.create_task(collect(c, got))
        await eventually_delivered(lambda: s.publish("tele/warmup", b"w", qos=1), lambda: bool(got))

        async def publish_all() -> None:
            for i in range(N):
                await s.publish("tele/k", f"k-{i}".encode(), qos=1)  # acked by the site broker

        pub = asyncio.create_task(publish_all())
        await wait_for(lambda: len(_numbers(got)) >= N // 4, what="a quarter across")
        bridge.kill()  # mid-stream: the publisher keeps going into the site broker
        await pub
        await asyncio.sleep(0.5)
        bridge.start()
        try:
            await wait_for(lambda: len(set(_numbers(got))) >= N, timeout=90, what="all messages")
        finally:
            print("received", len(_numbers(got)), "distinct", len(set(_numbers(got))))
        task.cancel()
    nums = _numbers(got)
    assert set(nums) == set(range(N))
    first_seen: list[int] = []
    seen: set[int] = set()
    for n in nums:
        if n not in seen:
            seen.add(n)
            first_seen.append(n)
    inversions = [(a, b) for a, b in itertools.pairwise(first_seen) if b < a]
    assert not inversions, f"first arrivals out of order at {inversions[:5]}"
    print(f"bridge crash: {N} delivered, {len(nums) - N} duplicates")
