"""After a long partition a link drains its backlog at a bounded rate, live traffic first.

Real parts: two embedded brokers (``site``, ``cloud``) run by ``python -m fogmesh.broker run``
from a mesh file whose link has ``drain: {rate: 50, backlog: 100}``. The cloud broker is
killed; the site queues 600 readings, 30 heartbeats and 30 retained states of one node. The
site's link status says ``down`` with its queue depth. Then the cloud comes back:

- every reading arrives, in order, and no faster than the rate allows;
- readings published meanwhile (live) cross while the backlog still drains;
- of the queued heartbeats and retained states only the newest crosses (latest-only), and the
  cloud's retained state is that newest one;
- the cloud sees the link's status with the backlog still draining (both sides see the queue).
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiomqtt

from tests.support.mesh import MeshProcess, start_wan, wan_mesh
from tests.support.mqtt import client, collect, eventually_delivered, wait_for

N = 600
RATE = 50.0
STATUS = "fm/v1/mesh/site/links/wan"
NODE = "fm/v1/nodes/n1"


def _mesh(tmp: Path) -> Path:
    rules = [
        {"pattern": "tele/#", "direction": "out", "qos": 1},
        {"pattern": "fm/v1/nodes/#", "direction": "out", "qos": 1},
    ]
    return wan_mesh(tmp, rules, drain={"rate": RATE, "backlog": 100})


def _texts(got: list[aiomqtt.Message], prefix: str) -> list[str]:
    return [
        m.payload.decode()
        for m in got
        if isinstance(m.payload, bytes) and m.payload.startswith(prefix.encode())
    ]


async def _status(port: int, ok: Any) -> dict[str, Any]:
    """The first status of the link on the broker at ``port`` for which ``ok`` holds."""
    async with client(port) as c:
        await c.subscribe(STATUS, qos=1)
        async with asyncio.timeout(60):
            async for msg in c.messages:
                assert isinstance(msg.payload, bytes)
                status: dict[str, Any] = json.loads(msg.payload)
                if ok(status):
                    return status
    raise AssertionError("unreachable")


async def test_a_backlog_drains_at_its_rate_while_live_traffic_flows(
    tmp_path: Path, procs: list[MeshProcess]
) -> None:
    wan = start_wan(_mesh(tmp_path), procs)
    site, cloud = wan.ports
    cloud_proc = wan.cloud

    got: list[aiomqtt.Message] = []
    async with client(cloud, ident="cloud-sub", clean=False) as c, client(site) as s:
        await c.subscribe("tele/#", qos=1)
        await c.subscribe(f"{NODE}/#", qos=1)
        task = asyncio.create_task(collect(c, got))
        await eventually_delivered(lambda: s.publish("tele/warm", b"w-0", qos=1), lambda: bool(got))
        task.cancel()

    cloud_proc.kill()
    async with client(site) as s:
        for n in range(30):  # 30 heartbeats and 30 states among the readings, in order
            batch = range(n * N // 30, (n + 1) * N // 30)
            await asyncio.gather(
                *(s.publish("tele/backlog", f"b-{i}".encode(), qos=1) for i in batch)
            )
            await s.publish(f"{NODE}/heartbeat", f"hb-{n}".encode(), qos=1)
            await s.publish(f"{NODE}/state", f"st-{n}".encode(), qos=1, retain=True)
    down = await _status(site, lambda st: st["state"] == "down" and st["queue_depth"] >= N + 60)
    assert down["queued_to_remote"] >= N + 60
    assert down["since"] is not None

    live = 0
    backlog_done = asyncio.Event()

    async def publish_live(s: aiomqtt.Client) -> None:
        # from before the cloud is back until the whole backlog crossed, each on a topic of its
        # own: those published once the link is up have nothing in the backlog to wait for
        nonlocal live
        while not backlog_done.is_set():
            await s.publish(f"tele/live/{live}", f"l-{live}".encode(), qos=1)
            live += 1
            await asyncio.sleep(0.05)

    got.clear()
    async with client(site) as s:
        publisher = asyncio.create_task(publish_live(s))
        began = time.monotonic()
        cloud_proc.start()
        async with client(cloud, ident="cloud-sub", clean=False) as c, client(cloud) as watch:
            task = asyncio.create_task(collect(c, got))
            seen: list[aiomqtt.Message] = []
            await watch.subscribe(STATUS, qos=1)
            watcher = asyncio.create_task(collect(watch, seen))
            try:
                # a reading of the backlog's topic published now crosses after the backlog
                await s.publish("tele/backlog", b"b-late", qos=1)
                await wait_for(lambda: len(set(_texts(got, "b-"))) > N, 300, "the backlog")
                drained_s = time.monotonic() - began
                backlog_done.set()
                await publisher
                await wait_for(lambda: len(set(_texts(got, "l-"))) == live, 60, "every live one")
                await wait_for(lambda: bool(_texts(got, "st-")), 30, "the newest state")
            finally:
                publisher.cancel()
                task.cancel()
                watcher.cancel()
    statuses: list[dict[str, Any]] = [
        json.loads(m.payload) for m in seen if isinstance(m.payload, bytes)
    ]

    backlog = _texts(got, "b-")
    firsts = list(dict.fromkeys(backlog))
    assert firsts == [*(f"b-{i}" for i in range(N)), "b-late"], "a topic crossed out of order"
    assert set(_texts(got, "hb-")) == {"hb-29"}, "older heartbeats crossed"
    assert set(_texts(got, "st-")) == {"st-29"}, "older states crossed"

    order = [m.payload.decode() for m in got if isinstance(m.payload, bytes)]
    last_backlog = max(i for i, p in enumerate(order) if p == f"b-{N - 1}")
    first_live = min(i for i, p in enumerate(order) if p.startswith("l-"))
    assert first_live < last_backlog, "live readings waited for the whole backlog"

    draining = [st for st in statuses if st["state"] == "up" and st["backlog"] > 0]
    assert draining, f"the cloud never saw the backlog: {statuses}"
    final = await _status(site, lambda st: st["backlog"] == 0 and st["queue_depth"] == 0)
    assert final["coalesced"] >= 58, final  # 29 heartbeats, 29 states

    # a lower bound only (a noisy machine can only slow it): after a first batch of at most
    # RATE, the bucket lets RATE a second through
    assert drained_s >= 0.9 * (N - RATE) / RATE, f"{N} crossed in {drained_s:.1f}s"
    async with client(cloud) as fresh:
        await fresh.subscribe(f"{NODE}/state", qos=1)
        async with asyncio.timeout(30):
            retained = await anext(aiter(fresh.messages))
    assert retained.payload == b"st-29"
    print(f"{N} backlog readings in {drained_s:.1f}s, {live} live, {final['coalesced']} coalesced")
