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
import contextlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiomqtt

from fogmesh.broker.link_status import STATUS_EVERY
from fogmesh.protocol import LinkState, LinkStatus, topics
from tests.broker.conftest import MeshProcess, client, collect, eventually_delivered, wait_for
from tests.support.brokers import free_port
from tests.support.mesh import start_wan, wan_mesh
from tests.support.relay import CountingRelay

LAG = 1.0  # seconds the cloud's bytes are held back
STREAM_S = 6 * STATUS_EVERY  # six status ticks
RATE = 4.0  # messages per second
STATUS = topics.mesh_link("site", "wan")
RULES = [{"pattern": "tele/#", "direction": "out", "qos": 1}]


@contextlib.asynccontextmanager
async def lagging_relay(target: int, lag: float) -> AsyncIterator[int]:
    """A TCP relay on a free port to ``target`` on 127.0.0.1 that delivers what ``target``
    sends ``lag`` seconds late (in order); yields its port."""
    port = free_port()
    tasks: set[asyncio.Task[None]] = set()

    async def pipe(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float
    ) -> None:
        held: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            while True:
                due, data = await held.get()
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                writer.write(data)
                await writer.drain()

        out = asyncio.create_task(deliver())
        try:
            while data := await reader.read(65536):
                held.put_nowait((time.monotonic() + delay, data))
        finally:
            out.cancel()
            writer.close()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async with asyncio.timeout(10):
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target)
        for task in (pipe(reader, up_writer, 0.0), pipe(up_reader, writer, lag)):
            t = asyncio.create_task(task)
            tasks.add(t)
            t.add_done_callback(tasks.discard)

    server = await asyncio.start_server(serve, "127.0.0.1", port)
    try:
        yield port
    finally:
        server.close()
        for t in list(tasks):
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


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
    async with lagging_relay(cloud_port, LAG) as relay_port:
        mesh = wan_mesh(tmp_path, RULES, cloud={"port": cloud_port}, remote={"port": relay_port})
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
