"""Authentication and topic ACLs of the embedded broker."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiomqtt
import pytest

from fogmesh.protocol import topics
from tests.support.mesh import MeshProcess, start_alone
from tests.support.mqtt import client, collect, wait_for


@pytest.fixture
def port(tmp_path: Path, procs: list[MeshProcess]) -> int:
    return start_alone(tmp_path, procs, "site")[1]


@pytest.mark.parametrize(
    ("user", "password"),
    [(None, None), ("svc", "wrong"), ("nobody", "x"), ("svc", "")],
    ids=["no-credentials", "wrong-password", "unknown-user", "empty-password"],
)
async def test_refused_connections(port: int, user: str | None, password: str | None) -> None:
    with pytest.raises(aiomqtt.MqttError):
        async with client(port, user, password=password):
            pass


async def test_publish_outside_acl_is_never_delivered(port: int) -> None:
    got: list[aiomqtt.Message] = []
    async with client(port, "svc") as svc:
        await svc.subscribe("fm/v1/#", qos=1)
        task = asyncio.create_task(collect(svc, got))
        async with client(port, "node-a") as node, client(port, "acme") as acme:
            # refused: other node, own desired state, other tenant, outside the tree
            await node.publish(topics.node("node-b", "state"), b"bad-1", qos=1)
            await node.publish(topics.node("node-a", "desired"), b"bad-2", qos=1)
            await acme.publish(topics.api("globex", "apps", "deploy"), b"bad-3", qos=1)
            await acme.publish(topics.data("globex", "app", "s"), b"bad-4", qos=1)
            await acme.publish(topics.node("node-a", "state"), b"bad-5", qos=1)
            # no tenant forges a reply, in either form; no node forges app or liveness events
            await acme.publish(topics.reply("svc", "svc-client"), b"bad-6", qos=1)
            await acme.publish("fm/v1/reply/svc-client", b"bad-7", qos=1)
            await node.publish(topics.tenant_event("acme", "app-deployed"), b"bad-8", qos=1)
            await node.publish(topics.fleet_event("node-joined"), b"bad-9", qos=1)
            await node.publish(topics.node_cmd("node-a", "logs"), b"bad-10", qos=1)
            # allowed: own node topics, own tenant topics, replies
            await node.publish(topics.node("node-a", "state"), b"ok-1", qos=1)
            await acme.publish(topics.api("acme", "apps", "deploy"), b"ok-2", qos=1)
            await acme.publish(topics.data("acme", "app", "s"), b"ok-3", qos=1)
            await node.publish(topics.reply("svc", "svc-client"), b"ok-4", qos=1)
            await node.publish("fm/v1/reply/svc-client", b"ok-5", qos=1)
            # the events an agent owns
            await node.publish(topics.tenant_event("acme", "workload-state"), b"ok-6", qos=1)
            await node.publish(topics.tenant_event("acme", "workload-replaced"), b"ok-7", qos=1)
            await node.publish(topics.fleet_event("desired-rejected"), b"ok-8", qos=1)
        await wait_for(lambda: len(got) >= 8, what="the allowed messages")
        await asyncio.sleep(1.0)
        task.cancel()
    payloads = sorted(bytes(m.payload) for m in got)
    assert payloads == [f"ok-{i}".encode() for i in range(1, 9)]


async def test_subscribe_acl_and_own_reply_topic(port: int) -> None:
    got: list[aiomqtt.Message] = []
    async with client(port, "acme", ident="acme-cli") as acme, client(port, "svc") as svc:
        # a tenant cannot read another tenant's data nor someone else's replies: refused SUBACK
        # (the subscription silently does not exist), so nothing from there arrives
        await acme.subscribe(topics.data_filter("globex", "app"), qos=1)
        await acme.subscribe("fm/v1/reply/other-cli", qos=1)
        await acme.subscribe("fm/v1/reply/globex/#", qos=1)
        await acme.subscribe("fm/v1/reply/#", qos=1)
        await acme.subscribe("fm/v1/reply/acme-cli", qos=1)  # the old form, bound to no account
        await acme.subscribe("fm/v1/reply/acme/#", qos=1)
        task = asyncio.create_task(collect(acme, got))
        await svc.publish(topics.data("globex", "app", "s"), b"secret", qos=1)
        await svc.publish("fm/v1/reply/other-cli", b"not-yours", qos=1)
        await svc.publish(topics.reply("globex", "acme-cli"), b"not-yours-either", qos=1)
        await svc.publish("fm/v1/reply/acme-cli", b"old-form", qos=1)
        await svc.publish(topics.reply("acme", "acme-cli"), b"yours", qos=1)
        await wait_for(lambda: bool(got), what="own reply")
        await asyncio.sleep(1.0)
        task.cancel()
    assert [bytes(m.payload) for m in got] == [b"yours"]


async def test_a_node_reads_its_desired_state_and_replies_but_no_other_node_s(port: int) -> None:
    got: list[aiomqtt.Message] = []
    async with client(port, "node-a", ident="node-a-agent") as node, client(port, "svc") as svc:
        await node.subscribe(topics.node("node-b", "desired"), qos=1)
        await node.subscribe("fm/v1/reply/node-b/#", qos=1)
        await node.subscribe(topics.node("node-a", "desired"), qos=1)
        await node.subscribe("fm/v1/reply/node-a/#", qos=1)
        task = asyncio.create_task(collect(node, got))
        await svc.publish(topics.node("node-b", "desired"), b"not-yours", qos=1)
        await svc.publish(topics.reply("node-b", "node-b-agent"), b"not-yours-either", qos=1)
        await svc.publish(topics.node("node-a", "desired"), b"desired", qos=1)
        await svc.publish(topics.reply("node-a", "node-a-agent"), b"reply", qos=1)
        await wait_for(lambda: len(got) >= 2, what="own desired state and reply")
        await asyncio.sleep(1.0)
        task.cancel()
    assert sorted(bytes(m.payload) for m in got) == [b"desired", b"reply"]


@pytest.mark.parametrize(
    ("user", "ident"),
    [("acme", "node-a-agent"), ("node-a", "acme-cli"), ("acme", "scheduler"), ("node-a", "x")],
    ids=["tenant-as-node", "node-as-tenant", "tenant-as-service", "node-any"],
)
async def test_an_account_cannot_take_another_client_id(port: int, user: str, ident: str) -> None:
    """Otherwise a tenant could kick a node agent off (firing its will) or read its replies."""
    with pytest.raises(aiomqtt.MqttError):
        async with client(port, user, ident=ident):
            pass


async def test_own_client_ids_and_service_ids_are_admitted(port: int) -> None:
    async with client(port, "acme", ident="acme"), client(port, "node-a", ident="node-a-agent"):
        pass
    async with client(port, "svc", ident="any-id-at-all"):
        pass
