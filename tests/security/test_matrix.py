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
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import aiomqtt
import pytest
import yaml

from fogmesh.protocol import ActualState, WorkloadPhase, WorkloadStatus, topics
from fogmesh.protocol.audit import AuditRecord
from tests.support.documented_fleet import Fleet, cli, serving_fleet, start_services, write_private
from tests.support.mqtt import collect, wait_for

# the module-scoped fleet is made once per worker that runs any of its tests: keep them on one
pytestmark = pytest.mark.xdist_group("security-matrix")
TOKEN = secrets.token_hex(6)  # marks this module's workload processes, to clean up only those
NODE = "edge-1"
USERS = (
    ("registry", "service"),
    ("scheduler", "service"),
    ("operator", "service"),
    (NODE, "node"),
    ("node-b", "node"),
    ("acme", "tenant"),
    ("globex", "tenant"),
)
APPS = {"acme": "shop", "globex": "ledger"}
VICTIM = "ledger-main-0"
"""globex's workload ({app}-{component}-{replica})."""
MARK = f"forged-{TOKEN}"
"""In every forged payload, so a subscriber can tell one apart from the real thing."""
WAIT = 120.0


def _manifest(app: str) -> str:
    return (
        f"name: {app}\ncomponents:\n  - name: main\n    runtime: native\n"
        f'    executable: /bin/sh\n    command: ["-c", "sleep 900; : {TOKEN}"]\n'
        "    requests: {cpu: 50m, memory: 16Mi}\n"
    )


def _json(msg: aiomqtt.Message) -> dict[str, Any]:
    with contextlib.suppress(ValueError, TypeError):
        body = json.loads(bytes(msg.payload))
        if isinstance(body, dict):
            return body
    return {}


@dataclass
class Peer:
    """One connection of an account: publishes what it likes and collects its replies."""

    client: aiomqtt.Client
    account: str
    ident: str
    got: list[aiomqtt.Message] = field(default_factory=list)

    @property
    def reply_to(self) -> str:
        return topics.reply(self.account, self.ident)

    async def send(self, topic: str, body: dict[str, Any], **fields: Any) -> dict[str, Any]:
        """Publish a request (an id, correlation id and our reply topic unless given)."""
        request = {
            "id": uuid.uuid4().hex,
            "correlation_id": uuid.uuid4().hex,
            "reply_to": self.reply_to,
            "source": self.ident,
            **body,
            **fields,
        }
        await self.client.publish(topic, json.dumps(request), qos=1)
        return request

    def replies(self, request: dict[str, Any]) -> list[dict[str, Any]]:
        found = (_json(m) for m in self.got)
        return [r for r in found if r.get("correlation_id") == request["correlation_id"]]

    async def ask(
        self, topic: str, body: dict[str, Any], *, wait: float = WAIT, **fields: Any
    ) -> dict[str, Any]:
        """Send a request and wait for its (first) reply."""
        request = await self.send(topic, body, **fields)
        await wait_for(lambda: bool(self.replies(request)), wait, f"a reply on {topic}")
        return self.replies(request)[0]

    async def settle(self, wait: float = WAIT) -> None:
        """Return once the broker and the services have handled all this peer sent before.

        A tenant asks the scheduler and the registry something it may ask; a node (which no
        service answers) publishes to its own reply topic and waits for the echo."""
        if self.account in APPS:
            await self.ask(topics.api(self.account, "apps", "list"), {}, wait=wait)
            await self.ask(topics.api(self.account, "nodes", "list"), {}, wait=wait)
            return
        ping = {"correlation_id": uuid.uuid4().hex}
        await self.client.publish(self.reply_to, json.dumps(ping), qos=1)
        await wait_for(lambda: bool(self.replies(ping)), wait, "our own echo")


@contextlib.asynccontextmanager
async def peer(
    fleet: Fleet, user: str, ident: str | None = None, *, persistent: bool = False
) -> AsyncIterator[Peer]:
    """A connected :class:`Peer` of ``user`` subscribed to its own reply topic."""
    client = fleet.client(user, ident, persistent=persistent)
    async with client:
        made = Peer(client, user, str(client.identifier))
        await client.subscribe(made.reply_to, qos=1)
        task = asyncio.create_task(collect(client, made.got))
        try:
            yield made
        finally:
            task.cancel()


@contextlib.asynccontextmanager
async def watching(fleet: Fleet, *filters: str) -> AsyncIterator[list[aiomqtt.Message]]:
    """An operator's subscriber on ``filters``: every message it receives, in order."""
    sink: list[aiomqtt.Message] = []
    async with fleet.client("operator") as client:
        for topic_filter in filters:
            await client.subscribe(topic_filter, qos=1)
        task = asyncio.create_task(collect(client, sink))
        try:
            yield sink
        finally:
            task.cancel()


def _audits(sink: list[aiomqtt.Message], request: dict[str, Any]) -> list[AuditRecord]:
    found = []
    for msg in sink:
        if msg.topic.matches(topics.audit_filter()):
            record = AuditRecord.model_validate(_json(msg))
            if record.request_id == request["id"]:
                found.append(record)
    return found


def _marked(sink: list[aiomqtt.Message]) -> list[str]:
    return [m.topic.value for m in sink if MARK.encode() in bytes(m.payload)]


async def _retained(fleet: Fleet, topic: str) -> dict[str, Any]:
    """The retained message on ``topic`` as a fresh subscriber gets it."""
    async with watching(fleet, topic) as sink:
        await wait_for(lambda: bool(sink), WAIT, f"the retained {topic}")
        return _json(sink[0])


async def _actual(fleet: Fleet) -> dict[tuple[str, str], WorkloadStatus]:
    """The agent's workloads by (tenant, name) in its retained actual state."""
    state = ActualState.model_validate(await _retained(fleet, topics.node(NODE, "actual")))
    return {(w.tenant, w.name): w for w in state.workloads}


async def _heartbeats(fleet: Fleet, count: int = 2) -> None:
    """Wait for ``count`` more of the agent's heartbeats (it is alive and past what came before)."""
    async with watching(fleet, topics.node(NODE, "heartbeat")) as sink:
        await wait_for(lambda: len(sink) >= count, WAIT, "the agent's heartbeats")


async def _victim_untouched(fleet: Fleet, before: dict[tuple[str, str], WorkloadStatus]) -> None:
    """globex's workload runs as it ran before (same process, no restart)."""
    await _heartbeats(fleet)
    now = (await _actual(fleet))[("globex", VICTIM)]
    was = before[("globex", VICTIM)]
    assert now.phase is WorkloadPhase.RUNNING, now
    assert (now.runtime_id, now.restarts) == (was.runtime_id, was.restarts), (was, now)


async def _prepare(fleet: Fleet) -> None:
    """Deploy each tenant's app (once the scheduler knows the node) and wait until both run."""
    async with watching(fleet, topics.node(NODE, "hello")) as hello:
        await wait_for(lambda: bool(hello), WAIT, "the agent's hello")
    # a standby stays silent: a request sent before the scheduler leads gets no answer
    await wait_for(lambda: "scheduler leads" in fleet.log("scheduler"), WAIT, "the lease")
    for tenant, app in APPS.items():
        path = write_private(fleet.root / f"{app}.yaml", _manifest(app))
        for _ in range(60):  # the scheduler may not have the node's hello yet
            done = await asyncio.to_thread(cli, fleet, "deploy", str(path), tenant=tenant)
            if done.returncode == 0 or not (
                "unschedulable" in done.stderr or "no reply" in done.stderr
            ):
                break
            await asyncio.sleep(1)
        assert done.returncode == 0, done.stdout + done.stderr
    deadline = asyncio.get_running_loop().time() + WAIT
    while True:
        running = {k for k, w in (await _actual(fleet)).items() if w.phase is WorkloadPhase.RUNNING}
        if {("acme", "shop-main-0"), ("globex", VICTIM)} <= running:
            return
        assert asyncio.get_running_loop().time() < deadline, f"not running: {running}"
        await asyncio.sleep(0.5)


@pytest.fixture(
    scope="module", params=["amqtt", pytest.param("mosquitto", marks=pytest.mark.mosquitto)]
)
def fleet(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fleet]:
    """The broker of ``request.param``, registry, scheduler and agent, both apps running."""
    root = tmp_path_factory.mktemp(f"matrix-{request.param}")
    with serving_fleet(root, request.param, TOKEN, USERS, WAIT) as made:
        start_services(made, NODE)
        try:
            asyncio.run(_prepare(made))
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{made.logs()}") from None
        yield made


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


_LEDGER: dict[str, Any] = yaml.safe_load(_manifest("ledger"))
APP_ATTACKS: dict[str, dict[str, Any]] = {
    "deploy": {"manifest": _LEDGER},
    "update": {"manifest": {**_LEDGER, "version": "2"}},
    "delete": {"app": "ledger"},
    "scale": {"app": "ledger", "component": "main", "replicas": 0},
}


@pytest.mark.parametrize("by", ["topic", "tenant-field"])
async def test_a_tenant_cannot_touch_anothers_app(fleet: Fleet, by: str) -> None:
    """acme deploys over, updates, deletes and scales globex's ledger, on globex's topic (the
    broker refuses the publish: no service ever gets it) or on its own naming globex in the
    request's ``tenant`` (refused); globex's app and workload are as they were."""
    before = await _actual(fleet)
    async with (
        watching(fleet, topics.audit_filter()) as audits,
        peer(fleet, "globex") as globex,
        peer(fleet, "acme") as acme,
    ):
        app_was = await globex.ask(topics.api("globex", "apps", "get"), {"app": "ledger"})
        for action, attack in APP_ATTACKS.items():
            body = {**attack, "tenant": "globex"}
            if by == "topic":
                sent = await acme.send(topics.api("globex", "apps", action), body)
                await acme.settle()
                assert _audits(audits, sent) == [], f"a service got {action} on globex's topic"
                assert acme.replies(sent) == []
            else:
                reply = await acme.ask(topics.api("acme", "apps", action), body)
                assert reply["ok"] is False, reply
                assert reply["error"]["code"] in {"unauthorised", "not_found"}, reply
        app_now = await globex.ask(topics.api("globex", "apps", "get"), {"app": "ledger"})
    assert app_now["app"] == app_was["app"]
    await _victim_untouched(fleet, before)


WORKLOAD_ATTACKS: dict[str, dict[str, Any]] = {
    "logs": {"tail": 10},
    "stop": {},
    "start": {},
    "restart": {},
    "upload": {"path": "/in/x", "content_b64": "eA=="},
    "download": {"path": "/in/x"},
}


@pytest.mark.parametrize("by", ["topic", "tenant-field", "own"])
async def test_a_tenant_cannot_command_anothers_workload(fleet: Fleet, by: str) -> None:
    """acme reads the logs of, stops, starts, restarts, uploads to and downloads from globex's
    workload: on globex's topic (never delivered), on its own naming globex (``unauthorised``)
    or on its own as if the workload were acme's (``not_found``, as for an absent one); the
    workload keeps running, untouched."""
    before = await _actual(fleet)
    async with watching(fleet, topics.audit_filter()) as audits, peer(fleet, "acme") as acme:
        for action, extra in WORKLOAD_ATTACKS.items():
            body = {"workload": VICTIM, **extra}
            if by == "topic":
                topic = topics.api("globex", "workloads", action)
                sent = await acme.send(topic, body, tenant="globex")
                await acme.settle()
                assert _audits(audits, sent) == [], f"a service got {action} on globex's topic"
                assert acme.replies(sent) == []
            else:
                claimed = "globex" if by == "tenant-field" else "acme"
                topic = topics.api("acme", "workloads", action)
                reply = await acme.ask(topic, body, tenant=claimed)
                assert reply["ok"] is False, reply
                assert reply["error"]["code"] in {"unauthorised", "not_found"}, reply
    await _victim_untouched(fleet, before)


@pytest.mark.parametrize(
    ("ident", "persistent"), [("acme-cli", False), ("acme-cli", True), ("acme/cli", False)]
)
async def test_a_tenant_cannot_take_over_anothers_session(
    fleet: Fleet, ident: str, persistent: bool
) -> None:
    """globex connects with acme's client id (a clean or a persistent session, as a bus
    keeps): the embedded broker refuses it and acme's session goes on receiving; Mosquitto
    lets it connect (a client id is no credential there), even resume acme's session, but it
    reads none of acme's replies."""
    stolen: list[aiomqtt.Message] = []
    async with peer(fleet, "acme", "acme-cli", persistent=persistent) as acme:
        await acme.settle()
        thief = fleet.client("globex", ident, persistent=persistent)
        if fleet.kind == "amqtt":
            with pytest.raises(aiomqtt.MqttError):
                async with thief:
                    pass
            # acme's session is still its own (a reply takes well under a second when it works)
            await acme.settle(wait=30.0)
            return
    async with thief:
        for topic_filter in ("fm/v1/reply/acme/#", f"fm/v1/reply/+/{ident}", "fm/v1/reply/#"):
            with contextlib.suppress(aiomqtt.MqttError):
                await thief.subscribe(topic_filter, qos=1)
        task = asyncio.create_task(collect(thief, stolen))
        try:
            async with peer(fleet, "acme") as acme:
                # answered on acme-cli's reply topic, which a resumed session subscribed
                await acme.send(
                    topics.api("acme", "apps", "list"),
                    {},
                    reply_to=topics.reply("acme", "acme-cli"),
                )
                await acme.settle()
            async with peer(fleet, "globex") as globex:
                await globex.settle()  # thief's subscriptions are in place by now, too
        finally:
            task.cancel()
    assert [
        m.topic.value for m in stolen if not m.topic.value.startswith("fm/v1/reply/globex/")
    ] == []


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
