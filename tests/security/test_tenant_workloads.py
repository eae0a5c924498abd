"""A tenant's commands to its own workloads (``fm/v1/api/{tenant}/workloads/{action}``),
relayed by the registry to the node's agent, against a live fleet: logs (and follow), upload
and download, stop that survives reconciliation, start, restart; and another tenant learns
nothing of the workload (``not_found`` alike for another's and an absent one)."""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from pydantic import ValidationError

from fogmesh.broker.acl import Identity, RoleTable
from fogmesh.bus import Bus, MessageContext, RawMessage
from fogmesh.cli.queries import stream_reply_topic
from fogmesh.protocol import (
    AckReply,
    ActualState,
    DownloadCommand,
    DownloadReply,
    ErrorCode,
    ErrorReply,
    Heartbeat,
    LogsCommand,
    LogsReply,
    RemoteError,
    Reply,
    Request,
    RestartCommand,
    StartCommand,
    StopCommand,
    UploadCommand,
    UploadReply,
    WorkloadPhase,
    WorkloadStatus,
    topics,
)
from fogmesh.protocol.audit import AuditRecord
from fogmesh.protocol.workload import RuntimeKind
from fogmesh.protocol.workload_api import WorkloadAction
from tests.agent.support import wait_for
from tests.registry.support import SimNode
from tests.security.workload_fleet import Fleet, fleet_running
from tests.support.brokers import REPO
from tests.support.buses import unique

P = WorkloadPhase


async def _ask(
    bus: Bus, tenant: str, action: WorkloadAction, request: Request, model: type[Reply]
) -> Reply:
    return await bus.request(topics.api(tenant, "workloads", action), request, model, timeout=40.0)


async def _refused(bus: Bus, tenant: str, action: WorkloadAction, request: Request) -> RemoteError:
    with pytest.raises(RemoteError) as info:
        await _ask(bus, tenant, action, request, Reply)
    return info.value


def _ticks(lines: list[str]) -> list[int]:
    return [int(line.split()[1]) for line in lines if line.startswith("tick ")]


async def test_tenant_acts_on_its_own_workload(tmp_path: Path) -> None:
    """logs, upload then download, stop (kept over reconcile passes), start, restart; each one
    audited on the registry's and the agent's audit topics."""
    tenant = unique("ta")
    async with fleet_running(tmp_path) as fleet:
        audits: list[AuditRecord] = fleet.probe.watch(topics.audit_filter(), AuditRecord)
        beats: list[Heartbeat] = fleet.probe.watch(topics.node(fleet.node, "heartbeat"), Heartbeat)
        async with fleet.deployed(tenant) as bus:

            async def ticked() -> bool:
                reply = await _ask(
                    bus, tenant, WorkloadAction.LOGS, LogsCommand(workload="web", tail=5), LogsReply
                )
                assert isinstance(reply, LogsReply)
                return bool(_ticks(reply.lines))

            await _until(ticked, "the ticker's lines in its logs")

            data = bytes(range(256)) * (3 * 4096)  # 3 MiB: through the relay both ways
            up = await _ask(
                bus,
                tenant,
                WorkloadAction.UPLOAD,
                UploadCommand(
                    workload="web", path="/in/data.bin", content_b64=base64.b64encode(data).decode()
                ),
                UploadReply,
            )
            assert isinstance(up, UploadReply)
            assert up.size == len(data)
            down = await _ask(
                bus,
                tenant,
                WorkloadAction.DOWNLOAD,
                DownloadCommand(workload="web", path="/in/data.bin"),
                DownloadReply,
            )
            assert isinstance(down, DownloadReply)
            assert base64.b64decode(down.content_b64) == data
            missing = await _refused(
                bus,
                tenant,
                WorkloadAction.DOWNLOAD,
                DownloadCommand(workload="web", path="/in/none"),
            )
            assert missing.code is ErrorCode.NOT_FOUND

            stopped = await _ask(
                bus, tenant, WorkloadAction.STOP, StopCommand(workload="web"), AckReply
            )
            assert isinstance(stopped, AckReply)
            await fleet.wait_phase("web", tenant, P.STOPPED)
            # several reconcile passes (1 s apart, as are heartbeats) leave it stopped
            seen = len(beats)
            await wait_for(lambda: len(beats) >= seen + 4, 60, "four more heartbeats")
            assert fleet.phase("web", tenant) is P.STOPPED

            await _ask(bus, tenant, WorkloadAction.START, StartCommand(workload="web"), AckReply)
            await fleet.wait_phase("web", tenant, P.RUNNING)
            await _ask(bus, tenant, WorkloadAction.STOP, StopCommand(workload="web"), AckReply)
            await fleet.wait_phase("web", tenant, P.STOPPED)
            # a restart starts a stopped workload and ends its stop
            await _ask(
                bus, tenant, WorkloadAction.RESTART, RestartCommand(workload="web"), AckReply
            )
            await fleet.wait_phase("web", tenant, P.RUNNING)
            seen = len(beats)
            await wait_for(lambda: len(beats) >= seen + 3, 60, "three more heartbeats")
            assert fleet.phase("web", tenant) is P.RUNNING

        def audited(service_is_agent: bool, action: str, outcome: str) -> bool:
            return any(
                a.action == action
                and a.outcome == outcome
                and (a.node == fleet.node) == service_is_agent
                for a in audits
            )

        await wait_for(
            lambda: audited(False, "stop", "ok") and audited(True, "stop", "ok"), 30, "stop audited"
        )
        assert audited(False, "download", "not_found")
        registry_stop = next(a for a in audits if a.action == "stop" and a.node is None)
        assert registry_stop.tenant == tenant
        assert registry_stop.target == "workload:web"
        agent_stop = next(a for a in audits if a.action == "stop" and a.node == fleet.node)
        assert agent_stop.claimed_tenant == tenant


async def test_other_tenant_learns_nothing(tmp_path: Path) -> None:
    """Tenant B's logs, stop, start, restart, upload and download of A's workload are
    ``not_found`` in the same words as for a name nobody runs; A's workload runs on."""
    owner, other = unique("ta"), unique("tb")
    async with fleet_running(tmp_path) as fleet:
        fleet.deploy("web", owner)
        await fleet.wait_phase("web", owner, P.RUNNING)
        async with fleet.tenant_bus(owner) as a_bus, fleet.tenant_bus(other) as b_bus:
            await a_bus.wait_connected(timeout=20)
            await b_bus.wait_connected(timeout=20)
            await fleet.wait_registered(a_bus, "web", owner)
            content = base64.b64encode(b"evil").decode()
            for name in ("web", "absent"):
                requests: list[tuple[WorkloadAction, Request]] = [
                    (WorkloadAction.LOGS, LogsCommand(workload=name)),
                    (WorkloadAction.LOGS, LogsCommand(workload=name, follow_s=5)),
                    (WorkloadAction.STOP, StopCommand(workload=name)),
                    (WorkloadAction.START, StartCommand(workload=name)),
                    (WorkloadAction.RESTART, RestartCommand(workload=name)),
                    (
                        WorkloadAction.UPLOAD,
                        UploadCommand(workload=name, path="/x", content_b64=content),
                    ),
                    (WorkloadAction.DOWNLOAD, DownloadCommand(workload=name, path="/x")),
                ]
                for action, request in requests:
                    refused = await _refused(b_bus, other, action, request)
                    assert refused.code is ErrorCode.NOT_FOUND, (action, refused)
                    assert refused.error.message == f"no workload {name!r} for tenant {other!r}"
                    assert owner not in str(refused.error.model_dump())
                # a request claiming the owner's tenant on the other's topic is refused too
                claimed = await _refused(
                    b_bus, other, WorkloadAction.STOP, StopCommand(workload=name, tenant=owner)
                )
                assert claimed.code is ErrorCode.UNAUTHORISED
            assert fleet.phase("web", owner) is P.RUNNING
            # B's upload never reached A's workload
            absent = await _refused(
                a_bus, owner, WorkloadAction.DOWNLOAD, DownloadCommand(workload="web", path="/x")
            )
            assert absent.code is ErrorCode.NOT_FOUND


async def test_logs_follow_streams_and_ends(tmp_path: Path) -> None:
    """A follow sends the tail, then new lines in order, and ends with a final reply when
    asked (end_follow) or when its follow_s are up."""
    tenant = unique("ta")
    async with fleet_running(tmp_path) as fleet, fleet.deployed(tenant) as bus:
        topic = topics.api(tenant, "workloads", WorkloadAction.LOGS)
        reply_to = stream_reply_topic(bus, topic)
        got: list[LogsReply | ErrorReply] = []

        async def on_reply(raw: RawMessage, _ctx: MessageContext) -> None:
            try:
                got.append(LogsReply.model_validate_json(raw.payload))
            except ValidationError:
                got.append(ErrorReply.model_validate_json(raw.payload))

        bus.subscribe(reply_to, RawMessage, on_reply)

        def stream(cid: str) -> list[LogsReply]:
            return [r for r in got if isinstance(r, LogsReply) and r.correlation_id == cid]

        asked = LogsCommand(workload="web", tail=3, follow_s=120, reply_to=reply_to)
        await bus.publish(topic, asked, qos=1)
        await wait_for(
            lambda: len(stream(asked.correlation_id)) >= 3, 60, "tail and two more replies"
        )
        await _ask(
            bus,
            tenant,
            WorkloadAction.LOGS,
            LogsCommand(workload="web", end_follow=asked.correlation_id),
            LogsReply,
        )
        await wait_for(
            lambda: any(r.final for r in stream(asked.correlation_id)), 30, "the final reply"
        )
        replies = stream(asked.correlation_id)
        assert [r.seq for r in replies] == list(range(len(replies)))
        assert [r.final for r in replies].count(True) == 1
        assert replies[-1].final
        ticks = _ticks([line for r in replies for line in r.lines])
        assert ticks == sorted(ticks)
        assert len(set(ticks)) == len(ticks)
        assert len(ticks) >= 3

        bounded = LogsCommand(workload="web", tail=1, follow_s=2, reply_to=reply_to)
        await bus.publish(topic, bounded, qos=1)
        await wait_for(
            lambda: any(r.final for r in stream(bounded.correlation_id)),
            60,
            "a follow that ends by itself",
        )
        assert not any(isinstance(r, ErrorReply) for r in got)


async def _until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Until ``check()`` is true (generous deadline: a loaded machine is slow)."""
    async with asyncio.timeout(60):
        while not await check():
            await asyncio.sleep(0.3)
    assert await check(), what


async def test_stop_survives_an_agent_restart(tmp_path: Path) -> None:
    """A stopped workload is not started again by an agent that restarts (the stop is kept in
    the agent's state dir), and starts when its tenant asks."""
    tenant = unique("ta")
    async with fleet_running(tmp_path) as fleet:
        beats: list[Heartbeat] = fleet.probe.watch(topics.node(fleet.node, "heartbeat"), Heartbeat)
        async with fleet.deployed(tenant) as bus:
            await _ask(bus, tenant, WorkloadAction.STOP, StopCommand(workload="web"), AckReply)
            await fleet.wait_phase("web", tenant, P.STOPPED)
            fleet.agent.stop()
            seen = len(fleet.actuals)
            fleet.agent.start()
            await wait_for(lambda: len(fleet.actuals) > seen, 60, "the restarted agent's actual")
            seen = len(beats)
            await wait_for(lambda: len(beats) >= seen + 4, 60, "four heartbeats after the restart")
            # created, not running: the agent's phases reach STOPPED only through a run
            assert fleet.phase("web", tenant) in {P.STOPPED, P.CONFIGURED}
            await _ask(bus, tenant, WorkloadAction.START, StartCommand(workload="web"), AckReply)
            await fleet.wait_phase("web", tenant, P.RUNNING)


def _cli(fleet: Fleet, tenant: str, *args: str) -> str:
    env = {**os.environ, "FOGMESH_USERNAME": tenant, "COLUMNS": "200"}
    done = subprocess.run(
        [sys.executable, "-m", "fogmesh.cli", "--broker", f"127.0.0.1:{fleet.broker.port}",
         "--tenant", tenant, "--timeout", "30", *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"fogmesh {' '.join(args)}: {done.stdout}{done.stderr}"
    return done.stdout


async def test_cli_uses_the_tenant_api(tmp_path: Path) -> None:
    """``fogmesh logs [-f]``, ``upload``, ``download``, ``stop``, ``start`` and ``restart`` as
    a tenant: no node topic is needed."""
    tenant = unique("ta")
    async with fleet_running(tmp_path) as fleet:
        async with fleet.deployed(tenant):
            pass  # the registry knows where the workload runs: the CLI can reach it

        def run(*args: str) -> str:
            return _cli(fleet, tenant, *args)

        source = tmp_path / "note.txt"
        source.write_text("hello from the tenant\n")
        assert "uploaded 22 bytes" in await asyncio.to_thread(
            run, "upload", "web", str(source), "--path", "/note.txt"
        )
        copy = tmp_path / "copy.txt"
        await asyncio.to_thread(run, "download", "web", "/note.txt", "--to", str(copy))
        assert copy.read_text() == source.read_text()
        followed = await asyncio.to_thread(run, "logs", "web", "--follow", "--for", "3")
        assert _ticks(followed.splitlines())
        assert "stopped web" in await asyncio.to_thread(run, "stop", "web")
        await fleet.wait_phase("web", tenant, P.STOPPED)
        assert "started web" in await asyncio.to_thread(run, "start", "web")
        await fleet.wait_phase("web", tenant, P.RUNNING)
        assert "restarted web" in await asyncio.to_thread(run, "restart", "web")
        assert _ticks((await asyncio.to_thread(run, "logs", "web", "--tail", "5")).splitlines())


def test_only_operators_read_the_audit() -> None:
    """The built-in roles: a tenant cannot subscribe to the audit topics, a node publishes only
    its own account's, a service reads them all."""
    table = RoleTable()
    tenant = Identity(username="acme", client_id="acme-cli", role="tenant", tenant="acme")
    node = Identity(username="edge-1", client_id="edge-1-agent", role="node", node="edge-1")
    service = Identity(username="ops", client_id="ops-cli", role="service")
    for flt in (topics.audit_filter(), f"{topics.ROOT}/audit/#", topics.audit("acme"), "#"):
        assert not table.may_subscribe(tenant, flt), flt
    assert not table.may_subscribe(node, topics.audit_filter())
    assert table.may_publish(node, topics.audit("edge-1"))
    assert not table.may_publish(node, topics.audit("registry"))
    assert not table.may_publish(tenant, topics.audit("acme"))
    assert table.may_subscribe(service, topics.audit_filter())


async def test_a_silent_node_holds_up_no_other_tenant(tmp_path: Path) -> None:
    """Tenant B's commands to a workload on a node that never answers end ``unavailable`` after
    the relay's bound; meanwhile tenant A's commands are answered (the relay does not wait on
    the registry's subscription)."""
    owner, other = unique("ta"), unique("tb")
    async with fleet_running(tmp_path) as fleet, SimNode(fleet.broker, unique("ghost")) as ghost:
        fleet.deploy("web", owner)
        await fleet.wait_phase("web", owner, P.RUNNING)
        assert ghost.bus is not None
        relayed: list[RawMessage] = []

        async def on_command(raw: RawMessage, _ctx: MessageContext) -> None:
            relayed.append(raw)  # heard, never answered

        ghost.bus.subscribe(topics.node_cmd_filter(ghost.node), RawMessage, on_command)
        status = WorkloadStatus(
            name="lost", tenant=other, app="app", component="lost",
            runtime=RuntimeKind.NATIVE, phase=P.RUNNING,
        )  # fmt: skip
        await ghost.bus.publish(
            topics.node(ghost.node, "actual"),
            ActualState(node=ghost.node, observed_generation=1, workloads=[status]),
            retain=True,
        )
        async with fleet.tenant_bus(owner) as a_bus, fleet.tenant_bus(other) as b_bus:
            await a_bus.wait_connected(timeout=20)
            await b_bus.wait_connected(timeout=20)
            await fleet.wait_registered(a_bus, "web", owner)
            await fleet.wait_registered(b_bus, "lost", other)
            order: list[str] = []

            async def b_stops() -> RemoteError:
                refused = await _refused(
                    b_bus, other, WorkloadAction.STOP, StopCommand(workload="lost")
                )
                order.append("b")
                return refused

            stuck = [asyncio.create_task(b_stops()) for _ in range(4)]
            # all four are relayed at once, and are waiting on the silent node
            await wait_for(lambda: len(relayed) >= 4, 60, "B's four commands at the node")
            for _ in range(3):
                reply = await _ask(
                    a_bus, owner, WorkloadAction.LOGS, LogsCommand(workload="web", tail=1),
                    LogsReply,
                )  # fmt: skip
                assert isinstance(reply, LogsReply)
                order.append("a")
            refusals = await asyncio.gather(*stuck)
            assert order[:3] == ["a", "a", "a"], order
            assert {r.code for r in refusals} == {ErrorCode.UNAVAILABLE}
