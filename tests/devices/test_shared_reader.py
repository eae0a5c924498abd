"""The shared reader on a broker with accounts and ACLs (the embedded broker and Mosquitto from
its rendered files): a serial sensor (a pseudo-terminal pair the test writes readings into)
listed in the node config's ``device_streams`` is read by the agent alone, and each reading
reaches every app on the node whose workload asked for it, on
``fm/v1/devices/{tenant}/{app}/{node}/{device}``. Another tenant reads none of them, and no
node can publish readings in another node's name. A device made under the running agent then
shows in ``fogmesh nodes`` without a restart (on the embedded broker; once is enough)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from pathlib import Path

import aiomqtt
import pytest

from fogmesh.agent.devices import DeviceCatalog
from fogmesh.agent.runtime.native import NativeRuntime
from fogmesh.broker.acl import Identity, RoleTable
from fogmesh.protocol import topics
from tests.agent.helpers import desired
from tests.agent.support import wait_for
from tests.devices.conftest import make_char_device
from tests.support.brokers import mosquitto_etc, wait_port
from tests.support.documented_fleet import (
    BIN,
    Fleet,
    cli,
    start_broker,
    start_registry,
    write_private,
)
from tests.support.mqtt import collect

# its workloads' tenant account (fm-t-dev-a) is a fixed name shared with the other device tests
pytestmark = [pytest.mark.mosquitto, pytest.mark.xdist_group("device-tenants")]

NODE = "edge-1"
TENANT = "dev-a"
USERS = (
    ("registry", "service"),
    ("operator", "service"),
    (NODE, "node"),
    ("edge-2", "node"),
    (TENANT, "tenant"),
    ("globex", "tenant"),
)


def _sleeper(app: str) -> dict[str, object]:
    return {
        "name": f"{app}-reader-0", "tenant": TENANT, "app": app, "component": "reader",
        "runtime": "native", "executable": "/bin/sleep", "command": ["300"],
        "devices": ["serial:ttyUSB0"],
    }  # fmt: skip


def _client(fleet: Fleet, user: str) -> aiomqtt.Client:
    return aiomqtt.Client(
        "127.0.0.1", fleet.port, username=user, password=fleet.password(user),
        identifier=f"{user}-{os.getpid()}", timeout=20,
    )  # fmt: skip


def _start_agent(fleet: Fleet, device_root: Path) -> Path:
    state = fleet.root / NODE
    config = {
        "node_id": NODE,
        "broker": {"host": "127.0.0.1", "port": fleet.port, "username": NODE,
                   "password": fleet.password(NODE)},
        "state_dir": str(state), "heartbeat_interval_s": 1, "reconcile_interval_s": 1,
        "runtimes": ["native"], "device_root": str(device_root),
        "device_streams": ["serial:ttyUSB0"],
    }  # fmt: skip
    path = write_private(fleet.root / "agent.json", json.dumps(config))
    fleet.start("agent", str(BIN / "fogmesh-agent"), "--config", str(path))
    return state


@pytest.mark.parametrize("kind", ["amqtt", "mosquitto"])
async def test_two_apps_each_get_every_reading_and_no_one_else(
    kind: str, tmp_path: Path, device_root: Path, serial_sensor: int
) -> None:
    """Both apps' workloads run (a streamed device is shared) and each app receives every
    reading, in order, from its node; another tenant gets none, a forged one never arrives."""
    fleet = Fleet(root=tmp_path)
    state: Path | None = None
    with mosquitto_etc() as etc:
        try:
            start_broker(fleet, kind, etc, USERS)
            await asyncio.to_thread(wait_port, fleet.port, 30)
            if kind == "amqtt":  # the registry behind fogmesh nodes: once is enough
                start_registry(fleet)
            state = _start_agent(fleet, device_root)
            await _readings_reach_the_holders(fleet, serial_sensor)
            if kind == "amqtt":
                make_char_device(device_root / "dev/video0")
                await _shows_in_fogmesh_nodes(fleet, "video:video0")
        except BaseException:
            print(fleet.logs())
            raise
        finally:
            fleet.stop()
            if state is not None:
                await _remove_native(state)


async def _readings_reach_the_holders(fleet: Fleet, master: int) -> None:
    got: dict[str, list[aiomqtt.Message]] = {"one": [], "two": []}
    stolen: list[aiomqtt.Message] = []
    async with (
        _client(fleet, "operator") as operator,
        _client(fleet, TENANT) as tenant,
        _client(fleet, "globex") as thief,
        _client(fleet, "edge-2") as other_node,
    ):
        one = topics.device_readings_filter(TENANT, "one", NODE)
        two = topics.device_readings_filter(TENANT, "two", NODE)
        await tenant.subscribe(one, qos=0)
        await tenant.subscribe(two, qos=0)
        with contextlib.suppress(aiomqtt.MqttError):  # the embedded broker refuses the SUBACK
            await thief.subscribe("fm/v1/devices/#", qos=0)

        async def sort(c: aiomqtt.Client) -> None:
            async for msg in c.messages:
                got["one" if msg.topic.matches(one) else "two"].append(msg)

        tasks = [asyncio.create_task(sort(tenant)), asyncio.create_task(collect(thief, stolen))]
        workloads = (_sleeper("one"), _sleeper("two"))
        await operator.publish(
            topics.node(NODE, "desired"), desired(NODE, 1, *workloads), qos=1, retain=True
        )

        def heard(app: str) -> list[bytes]:
            return [bytes(m.payload) for m in got[app] if bytes(m.payload) != b"warm"]

        def warmed() -> bool:  # both workloads placed and the reader live: press until heard
            os.write(master, b"warm\n")
            return all(got.values())

        await wait_for(warmed, 90, "a first reading at both apps")
        forged = topics.device_reading(TENANT, "one", NODE, "ttyUSB0")
        await other_node.publish(forged, b"forged", qos=1)  # edge-2 in edge-1's name: dropped
        readings = [f"t={i} 21.{i}C".encode() for i in range(5)]
        for reading in readings:
            os.write(master, reading + b"\r\n")
        await wait_for(lambda: all(len(heard(a)) >= len(readings) for a in got), 60, "readings")
        await asyncio.sleep(1.0)  # time for anything refused to show up anyway
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    assert heard("one") == readings
    assert heard("two") == readings
    assert [m.topic.value for m in got["one"]][-1] == topics.device_reading(
        TENANT, "one", NODE, "ttyUSB0"
    )
    assert stolen == []


async def _shows_in_fogmesh_nodes(fleet: Fleet, device: str) -> None:
    """Hot-plug: ``fogmesh nodes`` lists the device from the agent's new hello (no restart)."""
    latest = [""]

    async def keep_asking() -> None:
        while True:
            done = await asyncio.to_thread(cli, fleet, "nodes", "-o", "json", tenant=TENANT)
            latest[0] = done.stdout

    asking = asyncio.create_task(keep_asking())
    try:
        await wait_for(lambda: device in latest[0], 120, f"{device} in fogmesh nodes")
    finally:
        asking.cancel()
    (mine,) = [n for n in json.loads(latest[0]) if n["node"] == NODE]
    assert device in mine["facts"]["devices"]


async def _remove_native(state: Path) -> None:
    """Remove the workloads the stopped agent left running."""
    native = NativeRuntime(state / "native", NODE)
    try:
        for inst in await native.list_instances():
            await native.remove(inst.name)
    finally:
        await native.close()


def test_a_streamed_device_is_shared_and_never_given(device_root: Path) -> None:
    """A streamed device is offered as shared (several apps may ask) and the runtimes are
    given only the other devices a workload asks for: the reader alone opens it."""
    make_char_device(device_root / "dev/ttyUSB0")
    make_char_device(device_root / "dev/video0")
    catalog = DeviceCatalog(root=device_root, streamed=frozenset({"serial:ttyUSB0"}))
    assert [i.name for i in catalog.scan() if i.shared] == ["serial:ttyUSB0"]
    given = catalog.given(["serial[]", "video:video0"])
    assert [i.name for i in given] == ["video:video0"]


def test_the_roles_grant_readings_in_a_nodes_own_name_to_its_tenant_only() -> None:
    """The built-in roles (the embedded broker's and the rendered Mosquitto ACL's source): a
    node publishes readings only under its own name, and not on a tenant's data topics; a
    tenant reads only its own readings."""
    table = RoleTable()
    node = Identity(username=NODE, client_id=f"{NODE}-agent", role="node", node=NODE)
    tenant = Identity(username=TENANT, client_id="cli", role="tenant", tenant=TENANT)
    other = Identity(username="globex", client_id="cli", role="tenant", tenant="globex")
    mine = topics.device_reading(TENANT, "one", NODE, "ttyUSB0")
    assert table.may_publish(node, mine)
    assert not table.may_publish(node, topics.device_reading(TENANT, "one", "edge-2", "ttyUSB0"))
    assert not table.may_publish(node, topics.data(TENANT, "one", "device-ttyUSB0"))
    assert not table.may_publish(tenant, mine)
    assert table.may_subscribe(tenant, topics.device_readings_filter(TENANT, "one", NODE))
    assert table.may_subscribe(tenant, f"{topics.ROOT}/devices/{TENANT}/#")
    assert not table.may_subscribe(other, topics.device_readings_filter(TENANT, "one"))
    assert not table.may_subscribe(other, f"{topics.ROOT}/devices/#")
