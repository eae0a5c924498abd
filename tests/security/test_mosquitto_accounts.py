"""Runtime accounts on Mosquitto: ``fogmesh-broker mosquitto-accounts`` renders and SIGHUPs."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import pytest

from fogmesh.broker.config import load_mesh
from fogmesh.broker.mosquitto import render_mosquitto
from fogmesh.protocol import topics
from tests.security.conftest import fogmesh
from tests.support.brokers import REPO, Mosquitto
from tests.support.mesh_file import PASSWORDS, broker_spec, port_of, write_mesh
from tests.support.mqtt import client

pytestmark = pytest.mark.mosquitto


@pytest.fixture
def port(tmp_path: Path, install_dir: Path) -> Iterator[int]:
    mesh_path = write_mesh(
        tmp_path / "mesh.yaml", {"cloud": broker_spec(install_dir, "cloud", kind="mosquitto")}, []
    )
    etc = install_dir / "etc"
    written, _ = render_mosquitto(load_mesh(mesh_path), "cloud", etc)
    mosq = Mosquitto(written[0], tmp_path / "mosquitto.log")
    port = port_of(mesh_path, "cloud")
    pid_file = tmp_path / "mosquitto.pid"
    pid_file.write_text(f"{mosq.proc.pid}\n")
    sync = None
    try:
        mosq.wait_serving(port)
        with (tmp_path / "sync.log").open("ab") as log:
            sync = subprocess.Popen(
                [sys.executable, "-m", "fogmesh.broker", "--log-level", "INFO",
                 "mosquitto-accounts", "--mesh", str(mesh_path), "--broker", "cloud",
                 "--out", str(etc), "--pid-file", str(pid_file), "--username", "svc"],
                cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                env={**os.environ, "FOGMESH_PASSWORD": PASSWORDS["svc"]},
            )  # fmt: skip
        yield port
    finally:
        if sync is not None:
            sync.kill()
            sync.wait()
        mosq.stop()


async def _admitted(port: int, user: str, password: str) -> bool:
    try:
        async with client(port, user, password=password):
            return True
    except aiomqtt.MqttError:
        return False


async def _until(port: int, user: str, password: str, *, admitted: bool) -> None:
    deadline = time.monotonic() + 60
    while await _admitted(port, user, password) != admitted:
        assert time.monotonic() < deadline, f"{user} never became admitted={admitted}"
        await asyncio.sleep(0.3)


async def _ends(c: aiomqtt.Client) -> None:
    with pytest.raises(aiomqtt.MqttError):
        async for _ in c.messages:
            pass


async def test_mosquitto_follows_runtime_accounts(port: int) -> None:
    fogmesh(port, "account", "create", "edge-9", "--role", "node", "--password", "edge9-password")
    await _until(port, "edge-9", "edge9-password", admitted=True)
    async with client(port, "edge-9", ident="edge-9-agent", password="edge9-password") as node:
        # the node role as rendered: its own desired state, nothing of another node
        await node.subscribe(topics.node("edge-9", "desired"), qos=1)
        fogmesh(port, "node", "revoke", "edge-9")
        await asyncio.wait_for(_ends(node), timeout=60)  # Mosquitto drops it on reload
    await _until(port, "edge-9", "edge9-password", admitted=False)


async def test_a_tenant_deleted_on_mosquitto_is_disconnected(port: int) -> None:
    async with client(port, "acme") as acme:
        await acme.subscribe(topics.tenant_event_filter("acme"), qos=1)
        fogmesh(port, "tenant", "delete", "acme")
        await asyncio.wait_for(_ends(acme), timeout=60)
    await _until(port, "acme", PASSWORDS["acme"], admitted=False)
    assert await _admitted(port, "globex", PASSWORDS["globex"])
