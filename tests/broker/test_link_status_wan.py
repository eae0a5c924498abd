"""What a link's status costs on the WAN, and what its site copy says, with a running link.

A steady QoS 1 stream crosses a link whose cloud answers a second late (a relay holds back
every byte the cloud sends): at nearly every status tick a message or two is in flight in the
link's queue, yet none waits for long, so no status crosses to the cloud while the stream
lasts. And once the link goes quiet after a status it published on both brokers, the site
broker's copy counts that publish's own bytes on the WAN socket too (a trailing update on the
site broker only), as a byte-counting relay in front of the cloud sees them.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiomqtt

from fogmesh.broker.link_status import STATUS_EVERY
from fogmesh.protocol import LinkState, LinkStatus, topics
from tests.support.brokers import free_port
from tests.support.mesh import MeshProcess, start_wan, wan_mesh
from tests.support.mqtt import client, collect, eventually_delivered, wait_for
from tests.support.relay import CountingRelay

LAG = 1.0  # seconds the cloud's bytes are held back
STREAM_S = 6 * STATUS_EVERY  # six status ticks
RATE = 4.0  # messages per second
STATUS = topics.mesh_link("site", "wan")
RULES = [{"pattern": "tele/#", "direction": "out", "qos": 1}]


def _statuses(messages: list[aiomqtt.Message]) -> list[LinkStatus]:
    out = []
    for msg in messages:
        if msg.topic.matches(STATUS) and isinstance(msg.payload, bytes):
            out.append(LinkStatus.model_validate(json.loads(msg.payload)))
    return out


async def test_a_steady_stream_sends_no_status_across(
    tmp_path: Path, procs: list[MeshProcess]
) -> None:
    cloud_port = free_port()
    async with CountingRelay(cloud_port, lag=LAG) as relay:
        mesh = wan_mesh(tmp_path, RULES, cloud={"port": cloud_port}, remote={"port": relay.port})
        site = start_wan(mesh, procs).ports[0]
        at_cloud: list[aiomqtt.Message] = []
        at_site: list[aiomqtt.Message] = []
        async with client(site) as s, client(cloud_port) as c, client(site) as watch:
            await c.subscribe("tele/#", qos=1)
            await c.subscribe(STATUS, qos=1)
            await watch.subscribe(STATUS, qos=1)
            tasks = [asyncio.create_task(collect(c, at_cloud))]
            tasks.append(asyncio.create_task(collect(watch, at_site)))
            await eventually_delivered(
                lambda: s.publish("tele/warm", b"w", qos=1),
                lambda: any(m.topic.value == "tele/warm" for m in at_cloud),
            )
            # the warm-up's queue, if the cloud's copy showed it, is over there too
            await wait_for(
                lambda: (st := _statuses(at_cloud)) != [] and st[-1].queue_depth == 0,
                what="the cloud's copy of an empty queue",
            )
            far_before = len(_statuses(at_cloud))
            site_before = len(_statuses(at_site))
            n = int(STREAM_S * RATE)
            for i in range(n):
                await s.publish("tele/stream", str(i).encode(), qos=1)
                await asyncio.sleep(1 / RATE)
            await wait_for(
                lambda: sum(m.topic.value == "tele/stream" for m in at_cloud) >= n,
                what="the stream crossed",
            )
            local = _statuses(at_site)[site_before:]
            busy_ticks = sum(1 for st in local if st.queue_depth > 0)
            far = _statuses(at_cloud)[far_before:]
            for task in tasks:
                task.cancel()
    # the site broker heard the stream's queue at its ticks: messages were in flight
    assert busy_ticks >= 2, f"the lag kept no message in the queue at a tick: {local}"
    assert all(st.state is LinkState.UP for st in local)
    assert far == [], f"{len(far)} status(es) crossed for a steady stream: {far}"


async def test_the_site_copy_counts_the_last_publish_to_the_cloud(
    tmp_path: Path, procs: list[MeshProcess]
) -> None:
    cloud_port = free_port()
    async with CountingRelay(cloud_port) as relay:
        # keepalive pings far apart: nothing but the trailing update brings the counts in
        mesh = wan_mesh(
            tmp_path, RULES, cloud={"port": cloud_port}, remote={"port": relay.port}, keepalive=600
        )
        site = start_wan(mesh, procs).ports[0]
        at_cloud: list[aiomqtt.Message] = []
        at_site: list[aiomqtt.Message] = []
        async with client(cloud_port) as c, client(site) as watch:
            await c.subscribe(STATUS, qos=1)
            await watch.subscribe(STATUS, qos=1)
            tasks = [
                asyncio.create_task(collect(c, at_cloud)),
                asyncio.create_task(collect(watch, at_site)),
            ]
            # the link's "up" went to both brokers: its last publish to the cloud
            await wait_for(
                lambda: any(st.state is LinkState.UP for st in _statuses(at_cloud)),
                what="the link's up on the cloud",
            )

            def site_copy_matches() -> bool:
                st = _statuses(at_site)
                return bool(st) and (st[-1].wire_bytes_out, st[-1].wire_bytes_in) == (
                    relay.up,
                    relay.down,
                )

            try:
                await wait_for(site_copy_matches, timeout=6 * STATUS_EVERY, what="the counts")
            except AssertionError:
                last = _statuses(at_site)[-1] if at_site else None
                raise AssertionError(
                    f"relay up {relay.up} down {relay.down}; site copy {last}"
                ) from None
            far = _statuses(at_cloud)
            for task in tasks:
                task.cancel()
    # the trailing update went to the site broker only: the cloud's copy is an earlier one
    assert far[-1].wire_bytes_out < relay.up
