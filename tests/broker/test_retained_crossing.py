"""Retained state keeps its flag across links, and the writer's side wins after a partition.

* a SIGKILLed client's will (retained) reaches the far broker retained, with an amqtt cloud and
  with a Mosquitto cloud;
* a live retained message published at a Mosquitto end crosses as retained (the link speaks
  MQTT 5 to Mosquitto: retain-as-published, no-local);
* after the cloud was away, its older retained copy of a site topic is not replayed back over
  the link it came from: the site's newer value stays, and reaches the cloud.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import aiomqtt
import pytest

from tests.support.brokers import REPO, BrokerProcess
from tests.support.mesh import MeshProcess, start_wan, wan_mesh
from tests.support.mesh_file import PASSWORDS, port_of
from tests.support.mqtt import client, collect, eventually_delivered

RULES = [{"pattern": "fm/v1/nodes/#", "direction": "both", "qos": 1}]
STATE = "fm/v1/nodes/n1/state"
HELLO = "fm/v1/nodes/n1/hello"

_WILL_CLIENT = textwrap.dedent(
    """
    import asyncio, sys
    import aiomqtt

    async def main(port: int, password: str) -> None:
        will = aiomqtt.Will(sys.argv[3], b"offline", qos=1, retain=True)
        async with aiomqtt.Client("127.0.0.1", port, identifier="svc-willing", username="svc",
                                  password=password, will=will, keepalive=5) as c:
            await c.publish(sys.argv[3], b"online", qos=1, retain=True)
            print("ready", flush=True)
            await asyncio.Event().wait()

    asyncio.run(main(int(sys.argv[1]), sys.argv[2]))
    """
)


async def retained_value(port: int, topic: str, user: str | None = "svc") -> bytes | None:
    """What a fresh subscriber to ``topic`` gets as retained (None if nothing within 3 s)."""
    async with client(port, user) as c:
        await c.subscribe(topic, qos=1)
        try:
            async with asyncio.timeout(3):
                async for msg in c.messages:
                    if msg.retain and isinstance(msg.payload, bytes):
                        return msg.payload
        except TimeoutError:
            return None
    return None


async def until_retained(port: int, topic: str, want: bytes, user: str | None = "svc") -> None:
    """Poll until a fresh subscriber to ``topic`` gets ``want`` as retained (60 s at most)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while (got := await retained_value(port, topic, user)) != want:
        assert loop.time() < deadline, f"{topic}: retained {got!r}, want {want!r}"
        await asyncio.sleep(0.2)


def kill_willing_client(port: int, tmp: Path) -> None:
    """Start a client with a retained will on ``STATE``, let it go online, SIGKILL it."""
    script = tmp / "willing.py"
    script.write_text(_WILL_CLIENT)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(port), PASSWORDS["svc"], STATE],
        cwd=REPO,
        stdout=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"ready"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)


async def test_will_and_newest_retained_value_with_amqtt_cloud(
    tmp_path: Path, procs: list[MeshProcess]
) -> None:
    wan = start_wan(wan_mesh(tmp_path, RULES), procs)
    site_port, cloud_port = wan.ports
    cloud = wan.cloud
    seen_at_site: list[aiomqtt.Message] = []
    async with client(site_port) as site, client(site_port) as watch:
        await watch.subscribe(HELLO, qos=1)
        watching = asyncio.create_task(collect(watch, seen_at_site))
        await site.publish(HELLO, b"v1", qos=1, retain=True)
        await until_retained(cloud_port, HELLO, b"v1")

        # the will of a client that died without a word reaches the cloud retained
        kill_willing_client(site_port, tmp_path)
        await until_retained(site_port, STATE, b"offline")
        await until_retained(cloud_port, STATE, b"offline")

        # the cloud goes away; the site's writer moves on; the cloud comes back with v1 on disk
        cloud.stop()
        await site.publish(HELLO, b"v2", qos=1, retain=True)
        cloud.start()
        await until_retained(cloud_port, HELLO, b"v2")
        await asyncio.sleep(2)  # room for a stale replay to come back, if it were sent
        assert await retained_value(site_port, HELLO) == b"v2"
        after_v2 = [bytes(m.payload) for m in seen_at_site if isinstance(m.payload, bytes)]
        assert after_v2[after_v2.index(b"v2") :] == [b"v2"], after_v2
        watching.cancel()


@pytest.mark.mosquitto
async def test_will_and_live_retained_cross_a_mosquitto_end(
    tmp_path: Path, procs: list[MeshProcess]
) -> None:
    mosq = BrokerProcess("mosquitto", tmp_path / "mosq").start()
    try:
        mesh = wan_mesh(tmp_path, RULES, cloud={"kind": "mosquitto", "port": mosq.port})
        procs.append(MeshProcess(mesh, "site").start())
        site_port = port_of(mesh, "site")
        async with client(site_port) as site:
            # the link is carrying once a site message reaches Mosquitto
            got: list[aiomqtt.Message] = []
            async with client(mosq.port, None) as far:
                await far.subscribe("fm/v1/nodes/n1/warm", qos=1)
                task = asyncio.create_task(collect(far, got))
                await eventually_delivered(
                    lambda: site.publish("fm/v1/nodes/n1/warm", b"w", qos=1), lambda: bool(got)
                )
                task.cancel()
            kill_willing_client(site_port, tmp_path)
            await until_retained(mosq.port, STATE, b"offline", user=None)

            # a live retained message from the Mosquitto end is retained at the site
            async with client(mosq.port, None) as far:
                await far.publish("fm/v1/nodes/n1/desired", b"d1", qos=1, retain=True)
            await until_retained(site_port, "fm/v1/nodes/n1/desired", b"d1")
    finally:
        mosq.stop()
