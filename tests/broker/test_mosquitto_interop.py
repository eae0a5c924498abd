"""Mosquitto, started with the config rendered from the mesh file, bridges to an amqtt broker.

Also runs the rendered password and ACL files: the same ``$7$`` hashes and roles hold there.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from pathlib import Path

import aiomqtt
import pytest

from fogmesh.broker.config import load_mesh
from fogmesh.broker.mosquitto import render_mosquitto
from tests.broker.conftest import (
    MeshProcess,
    broker_spec,
    client,
    collect,
    eventually_delivered,
    link_spec,
    port_of,
    write_mesh,
)
from tests.support.brokers import wait_port

pytestmark = pytest.mark.mosquitto

RULES = [
    {"pattern": "tele/#", "direction": "out", "qos": 1},
    {"pattern": "cmd/#", "direction": "in", "qos": 1},
]


async def test_rendered_mosquitto_bridges_to_amqtt(
    tmp_path: Path, procs: list[MeshProcess]
) -> None:
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(exe).exists():
        pytest.fail("mosquitto is not installed; .ci/run installs it")
    mesh_path = write_mesh(
        tmp_path / "mesh.yaml",
        {
            "edge": broker_spec(tmp_path, "edge", kind="mosquitto"),
            "cloud": broker_spec(tmp_path, "cloud"),
        },
        [link_spec("up", "edge", "cloud", RULES)],
    )
    (tmp_path / "edge").mkdir()
    render_mosquitto(load_mesh(mesh_path), "edge", tmp_path / "mosq")
    if os.geteuid() == 0:
        # as root Mosquitto drops to user "mosquitto", which cannot read pytest's 0700 tmp dirs
        with (tmp_path / "mosq" / "mosquitto.conf").open("a") as conf:
            conf.write("user root\n")
    procs.append(MeshProcess(mesh_path, "cloud").start())
    log = (tmp_path / "mosquitto.log").open("ab")
    mosq = subprocess.Popen(
        [exe, "-c", str(tmp_path / "mosq" / "mosquitto.conf")], stdout=log, stderr=subprocess.STDOUT
    )
    try:
        edge, cloud = port_of(mesh_path, "edge"), port_of(mesh_path, "cloud")
        wait_port(edge)
        at_cloud: list[aiomqtt.Message] = []
        at_edge: list[aiomqtt.Message] = []
        async with client(edge) as e, client(cloud) as c:
            await c.subscribe("tele/#", qos=1)
            await e.subscribe("cmd/#", qos=1)
            tasks = [
                asyncio.create_task(collect(c, at_cloud)),
                asyncio.create_task(collect(e, at_edge)),
            ]
            await eventually_delivered(
                lambda: e.publish("tele/t", b"from-mosquitto", qos=1),
                lambda: any(m.payload == b"from-mosquitto" for m in at_cloud),
            )
            await eventually_delivered(
                lambda: c.publish("cmd/x", b"from-amqtt", qos=1),
                lambda: any(m.payload == b"from-amqtt" for m in at_edge),
            )
            for t in tasks:
                t.cancel()
        # the rendered password file refuses a wrong password on Mosquitto too
        with pytest.raises(aiomqtt.MqttError):
            async with client(edge, "svc", password="wrong"):
                pass
    finally:
        mosq.terminate()
        mosq.wait(timeout=10)
