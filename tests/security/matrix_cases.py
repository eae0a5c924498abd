"""What the security matrix's test modules share: its table, its fleet and its helpers.

The table: the accounts of the fleet (:data:`USERS`), the two tenants and their apps
(:data:`APPS`), globex's workload every row attacks (:data:`VICTIM`), the mark of every forged
payload (:data:`MARK`), and the requests acme tries on globex's app (:data:`APP_ATTACKS`) and
workload (:data:`WORKLOAD_ATTACKS`). The fleet: :func:`matrix_fleet`, what each module's
module-scoped ``fleet`` fixture yields for each of :data:`FLEET_KINDS`. The helpers: a
:class:`Peer` (:func:`peer`) that attacks, an operator's subscriber (:func:`watching`) that
sees what was published and audited, and the agent's retained state, heartbeats and globex's
workload as they are now (:func:`actual_workloads`, :func:`heartbeats`,
:func:`victim_untouched`).
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

__all__ = [
    "APPS",
    "APP_ATTACKS",
    "FLEET_KINDS",
    "MARK",
    "NODE",
    "TOKEN",
    "USERS",
    "VICTIM",
    "WAIT",
    "WORKLOAD_ATTACKS",
    "Peer",
    "actual_workloads",
    "audits_of",
    "heartbeats",
    "json_body",
    "manifest",
    "marked",
    "matrix_fleet",
    "peer",
    "retained",
    "victim_untouched",
    "watching",
]

TOKEN = secrets.token_hex(6)
"""Marks the matrix's workload processes, to clean up only those (a process makes one matrix
fleet at a time: each module's is stopped before the next module's starts)."""
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
FLEET_KINDS = ["amqtt", pytest.param("mosquitto", marks=pytest.mark.mosquitto)]
"""The ``params`` of each module's ``fleet`` fixture: one fleet per broker kind."""


def manifest(app: str) -> str:
    """The manifest of ``app``: one native component (marked with :data:`TOKEN`)."""
    return (
        f"name: {app}\ncomponents:\n  - name: main\n    runtime: native\n"
        f'    executable: /bin/sh\n    command: ["-c", "sleep 900; : {TOKEN}"]\n'
        "    requests: {cpu: 50m, memory: 16Mi}\n"
    )


_LEDGER: dict[str, Any] = yaml.safe_load(manifest("ledger"))
APP_ATTACKS: dict[str, dict[str, Any]] = {
    "deploy": {"manifest": _LEDGER},
    "update": {"manifest": {**_LEDGER, "version": "2"}},
    "delete": {"app": "ledger"},
    "scale": {"app": "ledger", "component": "main", "replicas": 0},
}
"""acme's requests on globex's ledger, by action (``tenant`` is added by the test)."""
WORKLOAD_ATTACKS: dict[str, dict[str, Any]] = {
    "logs": {"tail": 10},
    "stop": {},
    "start": {},
    "restart": {},
    "upload": {"path": "/in/x", "content_b64": "eA=="},
    "download": {"path": "/in/x"},
}
"""acme's requests on globex's workload, by action (``workload`` is added by the test)."""


def json_body(msg: aiomqtt.Message) -> dict[str, Any]:
    """The JSON object ``msg`` carries; ``{}`` if it carries anything else."""
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
        found = (json_body(m) for m in self.got)
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


def audits_of(sink: list[aiomqtt.Message], request: dict[str, Any]) -> list[AuditRecord]:
    """The audit records in ``sink`` of ``request`` (by its id)."""
    found = []
    for msg in sink:
        if msg.topic.matches(topics.audit_filter()):
            record = AuditRecord.model_validate(json_body(msg))
            if record.request_id == request["id"]:
                found.append(record)
    return found


def marked(sink: list[aiomqtt.Message]) -> list[str]:
    """The topics of the messages in ``sink`` that carry :data:`MARK` (forged ones)."""
    return [m.topic.value for m in sink if MARK.encode() in bytes(m.payload)]


async def retained(fleet: Fleet, topic: str) -> dict[str, Any]:
    """The retained message on ``topic`` as a fresh subscriber gets it."""
    async with watching(fleet, topic) as sink:
        await wait_for(lambda: bool(sink), WAIT, f"the retained {topic}")
        return json_body(sink[0])


async def actual_workloads(fleet: Fleet) -> dict[tuple[str, str], WorkloadStatus]:
    """The agent's workloads by (tenant, name) in its retained actual state."""
    state = ActualState.model_validate(await retained(fleet, topics.node(NODE, "actual")))
    return {(w.tenant, w.name): w for w in state.workloads}


async def heartbeats(fleet: Fleet, count: int = 2) -> None:
    """Wait for ``count`` more of the agent's heartbeats (it is alive and past what came before)."""
    async with watching(fleet, topics.node(NODE, "heartbeat")) as sink:
        await wait_for(lambda: len(sink) >= count, WAIT, "the agent's heartbeats")


async def victim_untouched(fleet: Fleet, before: dict[tuple[str, str], WorkloadStatus]) -> None:
    """globex's workload runs as it ran before (same process, no restart)."""
    await heartbeats(fleet)
    now = (await actual_workloads(fleet))[("globex", VICTIM)]
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
        path = write_private(fleet.root / f"{app}.yaml", manifest(app))
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
        running = {
            k
            for k, w in (await actual_workloads(fleet)).items()
            if w.phase is WorkloadPhase.RUNNING
        }
        if {("acme", "shop-main-0"), ("globex", VICTIM)} <= running:
            return
        assert asyncio.get_running_loop().time() < deadline, f"not running: {running}"
        await asyncio.sleep(0.5)


@contextlib.contextmanager
def matrix_fleet(kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """The broker of ``kind``, registry, scheduler and agent, both apps running; all stopped
    (and the workloads killed) on the way out."""
    root = tmp_path_factory.mktemp(f"matrix-{kind}")
    with serving_fleet(root, kind, TOKEN, USERS, WAIT) as made:
        start_services(made, NODE)
        try:
            asyncio.run(_prepare(made))
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{made.logs()}") from None
        yield made
