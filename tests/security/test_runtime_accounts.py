"""Accounts and tenants made, changed and deleted while the embedded broker runs."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiomqtt
import pytest

from fogmesh.protocol import topics
from tests.security.conftest import fogmesh
from tests.support.mesh import MeshProcess, start_alone
from tests.support.mqtt import client, wait_for


@pytest.fixture
def port(tmp_path: Path, procs: list[MeshProcess]) -> int:
    return start_alone(tmp_path, procs, "site")[1]


async def test_records_outlive_a_broker_restart(port: int, procs: list[MeshProcess]) -> None:
    fogmesh(port, "account", "create", "edge-3", "--role", "node", "--password", "edge3-password")
    fogmesh(port, "account", "delete", "node-a")  # an account of the mesh file
    procs[0].stop()
    procs[0].start()
    async with client(port, "edge-3", password="edge3-password"):
        pass
    await _refused(port, "node-a", "node-a-pw")


async def _ends(c: aiomqtt.Client) -> None:
    """Return once the broker has closed ``c``'s connection."""
    with pytest.raises(aiomqtt.MqttError):
        async for _ in c.messages:
            pass


async def _refused(port: int, user: str, password: str) -> None:
    with pytest.raises(aiomqtt.MqttError):
        async with client(port, user, password=password):
            pass


async def test_a_tenant_created_at_runtime_connects_and_ends_when_deleted(port: int) -> None:
    fogmesh(port, "tenant", "create", "initech", "--password", "initech-secret-1")
    async with client(port, "initech", password="initech-secret-1") as tenant:
        await tenant.subscribe(topics.tenant_event_filter("initech"), qos=1)
        listed = json.loads(fogmesh(port, "tenant", "list", "--json"))
        assert {"name": "initech", "state": "active"} in listed
        fogmesh(port, "tenant", "delete", "initech")
        await asyncio.wait_for(_ends(tenant), timeout=60)
    await _refused(port, "initech", "initech-secret-1")
    listed = json.loads(fogmesh(port, "tenant", "list", "--json"))
    assert {"name": "initech", "state": "deleted"} in listed


async def test_deleting_a_mesh_file_tenant_ends_its_session_and_refuses_it(port: int) -> None:
    async with client(port, "acme") as acme, client(port, "globex") as globex:
        await acme.subscribe(topics.tenant_event_filter("acme"), qos=1)
        fogmesh(port, "tenant", "delete", "acme")
        await asyncio.wait_for(_ends(acme), timeout=60)
        # the other tenant keeps its session and its rights
        await globex.publish(topics.api("globex", "apps", "list"), b"{}", qos=1)
    await _refused(port, "acme", "acme-pw")
    async with client(port, "globex"):
        pass


async def test_account_create_passwd_delete(port: int) -> None:
    fogmesh(port, "account", "create", "edge-9", "--role", "node", "--password", "first-pw-edge9")
    got: list[aiomqtt.Message] = []
    async with client(port, "svc") as svc:
        await svc.subscribe(topics.node("edge-9", "state"), qos=1)
        reader = asyncio.create_task(_collect(svc, got))
        async with client(port, "edge-9", password="first-pw-edge9") as node:
            # the node role applies to the runtime account: its own state, not another node's
            await node.publish(topics.node("edge-9", "state"), b"mine", qos=1)
            await wait_for(lambda: bool(got), what="the node's state")
            fogmesh(port, "account", "passwd", "edge-9", "--password", "second-pw-edge9")
            await asyncio.wait_for(_ends(node), timeout=60)  # the old password's session ends
        reader.cancel()
    await _refused(port, "edge-9", "first-pw-edge9")
    async with client(port, "edge-9", password="second-pw-edge9"):
        pass
    listed = json.loads(fogmesh(port, "account", "list", "--json"))
    assert [(a["username"], a["role"], a["revoked"]) for a in listed] == [("edge-9", "node", False)]
    assert "password_hash" not in listed[0]
    fogmesh(port, "account", "delete", "edge-9")
    await _refused(port, "edge-9", "second-pw-edge9")


async def _collect(c: aiomqtt.Client, sink: list[aiomqtt.Message]) -> None:
    async for msg in c.messages:
        sink.append(msg)
