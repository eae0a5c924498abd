"""Mosquitto, started exactly as rendered from the mesh file, as root the way a user would.

``mosquitto -c mosquitto.conf`` with Debian's binary: it drops to user ``mosquitto`` before it
reads ``passwd`` and ``acl`` and writes its persistence directory, so the rendered files must
work as they are. The same ``$7$`` hashes and roles hold there, bridges reach amqtt, and reply
topics stay private to their account although Mosquitto does not tie client ids to accounts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import pytest

from fogmesh.broker.config import MeshConfigError, load_mesh
from fogmesh.broker.mosquitto import render_mosquitto
from fogmesh.protocol import topics
from tests.support.brokers import Mosquitto
from tests.support.mesh import MeshProcess, link_ends
from tests.support.mesh_file import broker_spec, link_spec, port_of, write_mesh
from tests.support.mqtt import client, collect, wait_for

pytestmark = pytest.mark.mosquitto

RULES = [
    {"pattern": "tele/#", "direction": "out", "qos": 1},
    {"pattern": "cmd/#", "direction": "in", "qos": 1},
]


@pytest.fixture
def mosquittos() -> Iterator[list[Mosquitto]]:
    started: list[Mosquitto] = []
    yield started
    for mosq in started:
        mosq.stop()


async def test_rendered_mosquitto_bridges_to_amqtt(
    tmp_path: Path, install_dir: Path, procs: list[MeshProcess], mosquittos: list[Mosquitto]
) -> None:
    mesh_path = write_mesh(
        tmp_path / "mesh.yaml",
        {
            "edge": broker_spec(install_dir, "edge", kind="mosquitto"),
            "cloud": broker_spec(tmp_path, "cloud"),
        },
        [link_spec("up", "edge", "cloud", RULES)],
    )
    written, _notes = render_mosquitto(load_mesh(mesh_path), "edge", install_dir / "mosq")
    procs.append(MeshProcess(mesh_path, "cloud").start())
    mosquittos.append(Mosquitto(written[0], tmp_path / "mosquitto.log"))
    edge, cloud = port_of(mesh_path, "edge"), port_of(mesh_path, "cloud")
    mosquittos[0].wait_serving(edge)
    async with link_ends(edge, cloud, ["cmd/#"], ["tele/#"]) as ends:
        await ends.out("tele/t", b"from-mosquitto")
        await ends.back("cmd/x", b"from-amqtt")
    # the rendered password file refuses a wrong password on Mosquitto too
    with pytest.raises(aiomqtt.MqttError):
        async with client(edge, "svc", password="wrong"):
            pass


async def test_rendered_acl_holds_on_mosquitto(
    tmp_path: Path, install_dir: Path, mosquittos: list[Mosquitto]
) -> None:
    """A cloud tier on Mosquitto: nodes, tenants and services with the roles as rendered."""
    mesh_path = write_mesh(
        tmp_path / "mesh.yaml", {"cloud": broker_spec(install_dir, "cloud", kind="mosquitto")}, []
    )
    written, notes = render_mosquitto(load_mesh(mesh_path), "cloud", install_dir / "etc")
    assert notes == []
    mosquittos.append(Mosquitto(written[0], tmp_path / "mosquitto.log"))
    port = port_of(mesh_path, "cloud")
    mosquittos[0].wait_serving(port)

    desired = topics.node("node-a", "desired")
    at_node: list[aiomqtt.Message] = []
    at_svc: list[aiomqtt.Message] = []
    at_acme: list[aiomqtt.Message] = []
    at_thief: list[aiomqtt.Message] = []
    async with (
        client(port, "svc", ident="scheduler") as svc,
        client(port, "node-a", ident="node-a-agent") as node,
        client(port, "acme", ident="acme-cli-1") as acme,
        # another tenant takes the client id acme's tutorial uses: Mosquitto lets it
        client(port, "globex", ident="acme-tutorial") as thief,
        # ... or one holding "/", which a grant by client id (%c) would turn into acme's topic
        client(port, "globex", ident="acme/acme-tutorial") as slash_thief,
    ):
        await svc.subscribe(desired, qos=1)
        await svc.subscribe("fm/v1/reply/#", qos=1)
        await node.subscribe(desired, qos=1)
        await acme.subscribe("fm/v1/reply/acme/#", qos=1)
        await acme.subscribe("fm/v1/events/tenants/acme/#", qos=1)
        await thief.subscribe("fm/v1/reply/acme/#", qos=1)
        await thief.subscribe(topics.reply("acme", "acme-tutorial"), qos=1)
        await slash_thief.subscribe("fm/v1/reply/acme/acme-tutorial", qos=1)
        tasks = [
            asyncio.create_task(collect(c, sink))
            for c, sink in (
                (svc, at_svc),
                (node, at_node),
                (acme, at_acme),
                (thief, at_thief),
                (slash_thief, at_thief),
            )
        ]
        # a node reads its own desired state, and cannot write it
        await svc.publish(desired, b"from-scheduler", qos=1, retain=True)
        await node.publish(desired, b"forged-by-node", qos=1)
        # a tenant cannot publish a reply, in either form; a node answering a command can
        await acme.publish(topics.reply("svc", "scheduler"), b"forged-by-tenant", qos=1)
        await acme.publish("fm/v1/reply/scheduler", b"forged-by-tenant-old", qos=1)
        await node.publish(topics.reply("svc", "scheduler"), b"node-answer", qos=1)
        # the agent's own events reach its tenant
        await node.publish(topics.tenant_event("acme", "workload-state"), b"state", qos=1)
        # a reply to acme reaches acme and not the tenant holding acme's client id
        await svc.publish(topics.reply("acme", "acme-tutorial"), b"acme-secret", qos=1)
        await wait_for(
            lambda: len(at_acme) >= 2 and len(at_node) >= 1 and len(at_svc) >= 3,
            what="the allowed messages",
        )
        await asyncio.sleep(1.0)  # time for anything refused to show up anyway
        for t in tasks:
            t.cancel()
    assert [bytes(m.payload) for m in at_node] == [b"from-scheduler"]
    # services read every reply
    assert sorted(bytes(m.payload) for m in at_svc) == [
        b"acme-secret",
        b"from-scheduler",
        b"node-answer",
    ]
    assert sorted(bytes(m.payload) for m in at_acme) == [b"acme-secret", b"state"]
    assert at_thief == []


@pytest.mark.parametrize(
    "role",
    [
        {"publish": ["fm/v1/x/#"], "deny_publish": ["fm/v1/x/secret"]},
        {"publish": ["fm/v1/x/{client}"]},
    ],
    ids=["deny-publish", "client-placeholder"],
)
def test_roles_mosquitto_cannot_express_are_refused(
    tmp_path: Path, install_dir: Path, role: dict[str, list[str]]
) -> None:
    """Rendering them would widen or narrow a grant behind the user's back."""
    spec = broker_spec(install_dir, "edge", kind="mosquitto", roles={"odd": role})
    spec["users"] = [{**spec["users"][0], "role": "odd"}]
    mesh_path = write_mesh(tmp_path / "mesh.yaml", {"edge": spec}, [])
    with pytest.raises(MeshConfigError, match="Mosquitto cannot"):
        render_mosquitto(load_mesh(mesh_path), "edge", install_dir / "etc")
