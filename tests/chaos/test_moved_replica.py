"""The loss a chaos run found (seed 12): readings queued for a replica that is then moved.

Under a node agent the sample app's client id was ``{workload}-{node}``
(``fogmesh_sample.runtime``), a persistent session per replica *and node*; it is now
``{tenant}-{workload}``, the replica's on any node, which this test holds to. In the run, the
site broker of the convolver's node was SIGKILLed; the node's agent came back after its
reconnect back-off, too late for the registry (edge-3 offline), and the scheduler placed the
convolver on the site's other node. The old replica never reconnected before its agent stopped
it: the 23 readings that the sensor's broker had acknowledged meanwhile stayed queued for
``...-convolve-0-edge-3`` in the site broker's store (``queued`` rows), and the new replica,
``...-convolve-0-edge-1``, started with an empty session. Nothing acknowledged should be lost,
so this is the hole in its smallest form: a replica away, readings published, the replica placed
on another node.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from pathlib import Path

import aiomqtt

from tests.sample_app.helpers import (
    AppProcess,
    Collector,
    Names,
    app_env,
    running,
    send_readings,
    sensor_env,
    subscribed,
)
from tests.sample_app.helpers import wait_for as wait_until
from tests.support.brokers import BrokerProcess
from tests.support.mesh import MeshProcess, start_wan, wan_mesh
from tests.support.mqtt import client, collect, eventually_delivered, wait_for


def _stored(db: Path, client_id: str) -> tuple[int, int]:
    """(sessions, queued rows) a broker's store keeps for ``client_id``."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        sessions = conn.execute("SELECT count(*) FROM sessions WHERE client_id=?", (client_id,))
        n_sessions = int(sessions.fetchone()[0])
        queued = conn.execute("SELECT count(*) FROM queued WHERE client_id=?", (client_id,))
        return n_sessions, int(queued.fetchone()[0])


def test_readings_queued_for_a_moved_replica_reach_the_new_one(
    amqtt_broker: BrokerProcess, tmp_path: Path
) -> None:
    names = Names()
    env = app_env(amqtt_broker, names.tenant, names.app, FOGMESH_WORKLOAD="convolve-0")
    with Collector(amqtt_broker, names) as collector:
        old = AppProcess("convolve", {**env, "FOGMESH_NODE": "edge-3"}, tmp_path / "old.log")
        with running(old):
            subscribed("the old replica", old)
            assert old.terminate() == 0, old.log()
        send_readings(sensor_env(env, names.tenant), tmp_path / "sensor.log", 10, 4)
        want = set(range(10))
        wait_until("10 readings on .../in", lambda: collector.seqs_in() >= want)

        moved = AppProcess("convolve", {**env, "FOGMESH_NODE": "edge-1"}, tmp_path / "new.log")
        with running(moved):
            subscribed("the moved replica", moved)
            wait_until(
                "the readings queued for the old replica to be convolved",
                lambda: collector.seqs_out() >= want,
            )


async def test_readings_queued_at_the_old_site_reach_a_replica_moved_across_sites(
    tmp_path: Path,
) -> None:
    """The same loss across sites (seed 14): the convolver ran on edge-2 at ``site-b``; a long
    WAN cut healed, the will of an edge-2 agent killed during the cut arrived after the heal and
    took edge-2 offline, and the scheduler placed the convolver on edge-3 at ``site-a``. The
    readings the cloud had queued for ``site-b`` through the cut went on to the old replica's
    session there (485 rows in ``site-b``'s store at the end) and never to the new one.

    Here: a replica's persistent session at ``site``, away; readings published at ``cloud``
    cross the link into it; the replica, same client id, comes back at ``cloud``, whose claim
    makes ``site`` hand its queue on (``fogmesh.broker.handoff``), in order; and nothing more
    queues at ``site`` afterwards.
    """
    rules = [
        {"pattern": "data/#", "direction": "in", "qos": 1},
        {"pattern": "fm/v1/mesh/sessions/#", "direction": "both", "qos": 1},
    ]
    started: list[MeshProcess] = []
    try:
        site, cloud = start_wan(wan_mesh(tmp_path, rules), started).ports
        got: list[aiomqtt.Message] = []
        async with client(site, ident="svc-convolve-0", clean=False) as old:
            await old.subscribe("data/in", qos=1)
            task = asyncio.create_task(collect(old, got))
            async with client(cloud) as pub:
                await eventually_delivered(
                    lambda: pub.publish("data/in", b"warm-up", qos=1), lambda: bool(got)
                )
            task.cancel()
        async with client(cloud) as pub:
            for i in range(10):
                await pub.publish("data/in", f"r-{i}".encode(), qos=1)
        moved: list[aiomqtt.Message] = []
        async with client(cloud, ident="svc-convolve-0", clean=False) as new:
            await new.subscribe("data/in", qos=1)
            task = asyncio.create_task(collect(new, moved))
            want = [f"r-{i}" for i in range(10)]
            try:
                await wait_for(
                    lambda: set(want) <= {bytes(m.payload).decode() for m in moved},
                    60,
                    "the readings queued at the old site, at the new one",
                )
                got_order = [bytes(m.payload).decode() for m in moved]
                firsts = sorted(want, key=got_order.index)
                assert firsts == want, got_order  # handed on in the order they were queued
                async with client(cloud) as pub:
                    await pub.publish("data/in", b"after", qos=1)
                await wait_for(
                    lambda: b"after" in {bytes(m.payload) for m in moved}, 60, "a live one"
                )
            finally:
                task.cancel()
        # the old session is gone at the site, with its queue, on disk too
        await wait_for(
            lambda: _stored(tmp_path / "site" / "broker.sqlite", "svc-convolve-0") == (0, 0),
            60,
            "the old session and its queue to leave the site's store",
        )
    finally:
        for proc in reversed(started):
            proc.kill()
