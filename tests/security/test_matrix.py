"""The security matrix: every way a tenant or a node could overstep, against live services.

One fleet per broker kind, built the documented way (tests/support/documented_fleet.py): the
embedded broker from a mesh file (``fogmesh-broker run``) or Mosquitto from exactly the files
``render-mosquitto`` writes, the registry, the scheduler and one agent (``edge-1``) as
processes, and two tenants, acme (app ``shop``) and globex (app ``ledger``), each running one
native workload. Each row attacks and then asserts both that the attack failed and that the
victim is untouched.

How "nothing happened" is told without a timed wait: every request a service's router receives
is audited on ``fm/v1/audit/{account}`` (an operator reads them); an attacker's later, allowed
request on the same connection is answered (and audited) only after the broker has handled
everything the attacker sent before it, so once that answer is in, an earlier forbidden
message would have been delivered (and audited) already.

This module holds the rows about nodes' topics (one node speaking for another, a node writing
its own desired state) and about requests (a ``reply_to`` elsewhere, a replayed command);
test_matrix_tenants.py holds a tenant's rows against another tenant; the table, the fleet and
the helpers are in matrix_cases.py.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from fogmesh.protocol import topics
from tests.security.matrix_cases import (
    MARK,
    NODE,
    VICTIM,
    WAIT,
    peer,
    watching,
)
from tests.security.matrix_cases import actual_workloads as _actual
from tests.security.matrix_cases import audits_of as _audits
from tests.security.matrix_cases import heartbeats as _heartbeats
from tests.security.matrix_cases import json_body as _json
from tests.security.matrix_cases import marked as _marked
from tests.security.matrix_cases import retained as _retained
from tests.security.matrix_cases import victim_untouched as _victim_untouched
from tests.support.documented_fleet import Fleet
from tests.support.mqtt import wait_for

# the module-scoped fleet is made once per worker that runs any of its tests: keep them on one
pytestmark = pytest.mark.xdist_group("security-matrix")


async def test_a_node_cannot_speak_for_another(fleet: Fleet) -> None:
    """node-b's account publishes edge-1's hello, state, actual and heartbeat: no subscriber
    sees them and the registry's record of edge-1 stays as it was."""
    async with watching(fleet, f"{topics.ROOT}/nodes/{NODE}/#") as real:
        wanted = {topics.node(NODE, c) for c in ("hello", "heartbeat", "actual")}
        await wait_for(lambda: wanted <= {m.topic.value for m in real}, WAIT, "edge-1's own")
        async with peer(fleet, "acme") as acme:
            ask = {"node": NODE, "history": 0}
            before = (await acme.ask(topics.api("acme", "nodes", "get"), ask))["node"]
            async with peer(fleet, "node-b") as attacker:
                for channel in ("hello", "state", "actual", "heartbeat"):
                    topic = topics.node(NODE, channel)
                    body = next((_json(m) for m in real if m.topic.value == topic), {})
                    body = {**body, "source": MARK, "boot_id": MARK, "labels": {"tier": MARK}}
                    if "seq" in body:
                        body["seq"] = int(body["seq"]) + 10_000
                    await attacker.client.publish(topic, json.dumps(body), qos=1, retain=True)
                await attacker.settle()
            await _heartbeats(fleet)
            after = (await acme.ask(topics.api("acme", "nodes", "get"), ask))["node"]
        assert _marked(real) == []
    assert MARK not in json.dumps(after)
    for key in ("labels", "boot_id", "facts", "location", "first_seen"):
        assert after[key] == before[key], key
    assert after["state"] == "online"
    assert (await _actual(fleet)).keys() >= {("globex", VICTIM), ("acme", "shop-main-0")}


async def test_a_node_cannot_write_its_own_desired_state(fleet: Fleet) -> None:
    """edge-1's own account publishes its desired state (empty, a far later generation):
    refused; the retained desired state is the scheduler's and the agent runs both apps."""
    desired_topic = topics.node(NODE, "desired")
    was = await _retained(fleet, desired_topic)
    before = await _actual(fleet)
    async with watching(fleet, desired_topic) as seen, peer(fleet, NODE) as forger:
        forged = {**was, "source": MARK, "generation": int(was["generation"]) + 1000}
        forged["workloads"] = []
        await forger.client.publish(desired_topic, json.dumps(forged), qos=1, retain=True)
        await forger.settle()
        await _heartbeats(fleet)
    assert _marked(seen) == []
    assert await _retained(fleet, desired_topic) == was
    await _victim_untouched(fleet, before)


@pytest.mark.parametrize("service", ["apps", "nodes"])
@pytest.mark.parametrize("target", ["globex-reply", "node-desired"])
async def test_reply_to_elsewhere_is_never_published(
    fleet: Fleet, target: str, service: str
) -> None:
    """acme asks the scheduler (apps/list) or the registry (nodes/list) to answer on globex's
    reply topic or on edge-1's desired topic: the request is audited, nothing is published
    there, and the agent's desired state is the scheduler's still."""
    where = {
        "globex-reply": topics.reply("globex", "globex-cli"),
        "node-desired": topics.node(NODE, "desired"),
    }[target]
    was = await _retained(fleet, topics.node(NODE, "desired"))
    async with watching(fleet, where, topics.audit_filter()) as seen, peer(fleet, "acme") as acme:
        sent = await acme.send(topics.api("acme", service, "list"), {}, reply_to=where)
        await wait_for(lambda: bool(_audits(seen, sent)), WAIT, "the request audited")
        await acme.settle()
    answers = [
        m
        for m in seen
        if m.topic.value == where and _json(m).get("correlation_id") == sent["correlation_id"]
    ]
    assert answers == []
    assert await _retained(fleet, topics.node(NODE, "desired")) == was


@pytest.mark.parametrize("resource", ["workloads", "apps"])
async def test_a_replayed_command_is_handled_once(fleet: Fleet, resource: str) -> None:
    """acme sends one request twice, same id and correlation id: one answer, the second
    audited ``replayed``; the restart reaches the agent once."""
    if resource == "workloads":
        topic = topics.api("acme", "workloads", "restart")
        body: dict[str, Any] = {"workload": "shop-main-0"}
    else:
        topic = topics.api("acme", "apps", "scale")
        body = {"app": "shop", "component": "main", "replicas": 1}
    async with watching(fleet, topics.audit_filter()) as audits, peer(fleet, "acme") as acme:
        first = await acme.send(topic, body)
        await wait_for(lambda: bool(acme.replies(first)), WAIT, "the first answer")
        await acme.client.publish(topic, json.dumps(first), qos=1)
        await wait_for(lambda: len(_audits(audits, first)) == 2, WAIT, "the replay audited")
        await acme.settle()
    assert len(acme.replies(first)) == 1, acme.replies(first)
    assert sorted(r.outcome for r in _audits(audits, first)) == ["ok", "replayed"]
    if resource == "workloads":
        at_agent = [
            m
            for m in audits
            if m.topic.value == topics.audit(NODE)
            and _json(m).get("action") == "restart"
            and _json(m).get("target") == "workload:shop-main-0"
        ]
        assert len(at_agent) == 1, [_json(m) for m in at_agent]
