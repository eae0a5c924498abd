"""Placed is not running: a workload whose agent never starts it is an alarm, not a silence.

Real parts: the embedded broker from a mesh file (``fogmesh-broker run``), the scheduler and one
node agent (native runtime) as processes with their documented YAML files. Heartbeats every
30 s and a 300 s MQTT keepalive keep the node online (no missed heartbeat, no last will) while
its agent is SIGSTOPped; the scheduler's
``not_running_alarm_s`` is 3 s. The app is deployed while the agent is stopped: the scheduler
places it on the (online) node and writes the desired state, which nothing acts on. Then:

- a ``workload-not-running`` event names the workload and the node;
- ``apps/list`` counts it in ``not_running`` and ``apps/get`` gives its ``not_running_s``;
- once the agent runs again (SIGCONT) and starts it, both clear.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from fogmesh.bus import Bus, BusConfig, MessageContext
from fogmesh.protocol import RemoteError, RequestTimeout, topics
from fogmesh.protocol.apps import AppListReply, AppReply, DeployApp, GetApp, ListApps
from fogmesh.protocol.events import Event, EventKind, NotRunningData
from fogmesh.protocol.manifest import AppManifest
from fogmesh.protocol.node import NodeHello, NodeLiveness, NodeStateMessage
from fogmesh.protocol.topics import NodeChannel
from tests.support.buses import eventually
from tests.support.documented_fleet import (
    BIN,
    Fleet,
    kill_marked,
    start_broker,
    write_private,
)

NODE = "edge-1"
TENANT = "acme"
USERS = (("scheduler", "service"), ("operator", "service"), (NODE, "node"), (TENANT, "tenant"))


@pytest.fixture
async def fleet(tmp_path: Path) -> AsyncIterator[Fleet]:
    made = Fleet(tmp_path)
    try:
        yield made
    finally:
        agent = made.procs.get("agent")
        if agent is not None and agent.poll() is None:
            agent.send_signal(signal.SIGCONT)  # a stopped process cannot act on SIGTERM
        made.stop()


def start_scheduler(fleet: Fleet) -> None:
    config = write_private(
        fleet.root / "scheduler.yaml",
        f"client_id: scheduler-1\nbroker: {{host: 127.0.0.1, port: {fleet.port},"
        f" username: scheduler, password: {fleet.password('scheduler')}}}\n"
        f"state_dir: {fleet.root / 'scheduler'}\nheartbeat_interval_s: 30\n"
        "not_running_alarm_s: 3\ntick_s: 0.5\n",
    )
    fleet.start("scheduler", str(BIN / "fogmesh-scheduler"), "--config", str(config))


def start_agent(fleet: Fleet) -> None:
    config = write_private(
        fleet.root / f"{NODE}.yaml",
        f"node_id: {NODE}\nsite: cloud\n"
        f"broker: {{host: 127.0.0.1, port: {fleet.port}, username: {NODE},"
        f" password: {fleet.password(NODE)}, keepalive: 300}}\n"
        f"state_dir: {fleet.root / NODE}\nheartbeat_interval_s: 30\n"
        "reconcile_interval_s: 1\nruntimes: [native]\n",
    )
    fleet.start("agent", str(BIN / "fogmesh-agent"), "--config", str(config))


def manifest(token: str) -> AppManifest:
    return AppManifest.model_validate(
        {
            "name": "stuck",
            "tenant": TENANT,
            "components": [
                {
                    "name": "main",
                    "runtime": "native",
                    "executable": sys.executable,
                    "command": ["-c", f"import time; time.sleep(3600)  # {token}"],
                    "requests": {"cpu": "50m", "memory": "32Mi"},
                }
            ],
        }
    )


async def test_a_placed_workload_no_agent_runs_is_an_alarm(fleet: Fleet, tmp_path: Path) -> None:
    token = f"fm-notrunning-{secrets.token_hex(4)}"
    start_broker(fleet, "amqtt", tmp_path / "etc", USERS)
    start_scheduler(fleet)
    start_agent(fleet)
    config = BusConfig(
        port=fleet.port,
        client_id="operator-test",
        username="operator",
        password=fleet.password("operator"),
        reconnect_base=0.1,
        reconnect_cap=1.0,
    )
    alarms: list[Event] = []
    heard: set[str] = set()

    async def on_event(msg: Event, ctx: MessageContext) -> None:
        alarms.append(msg)

    async def on_state(msg: NodeStateMessage, ctx: MessageContext) -> None:
        if msg.state is NodeLiveness.ONLINE:
            heard.add("state")

    async def on_hello(msg: NodeHello, ctx: MessageContext) -> None:
        heard.add("hello")

    try:
        async with Bus(config) as bus:
            kind = EventKind.WORKLOAD_NOT_RUNNING
            bus.subscribe(topics.tenant_event_filter(TENANT, kind), Event, on_event)
            bus.subscribe(topics.node(NODE, NodeChannel.STATE), NodeStateMessage, on_state)
            bus.subscribe(topics.node(NODE, NodeChannel.HELLO), NodeHello, on_hello)
            # the scheduler needs the hello (facts) and the online state before it places
            await eventually(lambda: len(heard) == 2, 120, f"{NODE} heard\n{fleet.logs()}")
            await asyncio.sleep(1.0)  # the scheduler's subscription got them as well
            fleet.procs["agent"].send_signal(signal.SIGSTOP)

            reply: AppReply | None = None
            for _ in range(30):  # the scheduler may still be taking its lease, learning the node
                with contextlib.suppress(RemoteError, RequestTimeout):
                    reply = await bus.request(
                        topics.api(TENANT, "apps", "deploy"),
                        DeployApp(manifest=manifest(token)),
                        AppReply,
                        timeout=15,
                    )
                    break
                await asyncio.sleep(2.0)
            assert reply is not None, fleet.logs()
            assert [p.node for p in reply.app.placements] == [NODE]
            workload = reply.app.placements[0].workload

            await eventually(lambda: bool(alarms), 60, f"no alarm\n{fleet.logs()}")
            alarm = alarms[0]
            assert (alarm.workload, alarm.node, alarm.app) == (workload, NODE, "stuck")
            data = alarm.payload_as(NotRunningData)
            assert data.bound_s == 3
            assert data.not_running_s > 3
            assert data.node_state == "online"

            listed = await bus.request(
                topics.api(TENANT, "apps", "list"), ListApps(), AppListReply, timeout=15
            )
            assert [(a.name, a.pending, a.not_running) for a in listed.apps] == [("stuck", 0, 1)]
            got = await bus.request(
                topics.api(TENANT, "apps", "get"), GetApp(app="stuck"), AppReply, timeout=15
            )
            waited = got.app.placements[0].not_running_s
            assert waited is not None
            assert waited > 3

            fleet.procs["agent"].send_signal(signal.SIGCONT)
            cleared: list[bool] = []

            async def check() -> None:
                got = await bus.request(
                    topics.api(TENANT, "apps", "get"), GetApp(app="stuck"), AppReply, timeout=15
                )
                cleared.append(got.app.placements[0].not_running_s is None)

            for _ in range(120):
                await check()
                if cleared[-1]:
                    break
                await asyncio.sleep(0.5)
            assert cleared[-1], f"still not running after SIGCONT\n{fleet.logs()}"
            listed = await bus.request(
                topics.api(TENANT, "apps", "list"), ListApps(), AppListReply, timeout=15
            )
            assert listed.apps[0].not_running == 0
            assert len(alarms) == 1, alarms  # raised once, not on every tick
    finally:
        kill_marked(token)
