"""Malformed desired states, tenant isolation and the four commands."""

from __future__ import annotations

import base64

import pytest

from fogmesh.protocol import (
    AckReply,
    ActualState,
    ErrorCode,
    Event,
    LogsCommand,
    LogsReply,
    RemoteError,
    Reply,
    ReportCommand,
    ReportReply,
    Request,
    RestartCommand,
    UploadCommand,
    UploadReply,
    topics,
)
from tests.agent.helpers import desired, docker_workload
from tests.agent.support import AgentNode, docker, inspect, wait_for
from tests.support.buses import unique
from tests.support.images import BUSYBOX_TAG

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("busybox")]
busybox = BUSYBOX_TAG


async def _converged(actuals: list[ActualState], count: int) -> None:
    await wait_for(
        lambda: (
            bool(actuals)
            and actuals[-1].state == "converged"
            and len(actuals[-1].workloads) == count
        ),
        what=f"{count} workloads converged",
    )


async def test_malformed_desired_is_rejected_and_workloads_untouched(
    agent_node: AgentNode,
) -> None:
    node, tenant = agent_node.node, unique("t")
    events = agent_node.probe.watch(topics.fleet_event("desired-rejected"), Event)
    actuals = agent_node.watch("actual", ActualState)
    agent_node.start()
    agent_node.set_desired(desired(node, 1, docker_workload("web", tenant, busybox)))
    await _converged(actuals, 1)
    before = dict(agent_node.containers())
    assert len(before) == 1

    agent_node.set_desired("{not json")
    await wait_for(lambda: any(e.node == node for e in events), what="rejected event (not JSON)")
    # JSON, but a docker workload without an image, at a higher generation
    bad = desired(
        node, 5, {"name": "x", "tenant": tenant, "app": "a", "component": "c", "runtime": "docker"}
    )
    agent_node.set_desired(bad)
    await wait_for(
        lambda: sum(e.node == node for e in events) >= 2, what="rejected event (bad spec)"
    )
    assert "image" in events[-1].message
    await wait_for(
        lambda: "image" in actuals[-1].rejected and actuals[-1].observed_generation == 1,
        what="rejected in actual",
    )
    assert [w.name for w in actuals[-1].workloads] == ["web"]
    assert agent_node.containers() == before  # untouched: same container still running
    # a good desired state afterwards is taken and clears "rejected"
    agent_node.set_desired(desired(node, 6, docker_workload("web", tenant, busybox)))
    await wait_for(
        lambda: actuals[-1].observed_generation == 6 and actuals[-1].rejected == "",
        what="accepted again",
    )
    assert agent_node.containers() == before


async def test_tenants_isolated_and_commands_answered(agent_node: AgentNode) -> None:
    node, alice, bob = agent_node.node, unique("alice"), unique("bob")
    actuals = agent_node.watch("actual", ActualState)
    agent_node.start()
    doc = desired(
        node,
        1,
        docker_workload("a-web", alice, busybox, app="shop", component="web"),
        docker_workload("b-web", bob, busybox, app="shop", component="web"),
    )
    agent_node.set_desired(doc)
    await _converged(actuals, 2)

    # isolation: names carry the tenant, each tenant has its own network
    a_name, b_name = f"fm-{node}-{alice}-shop-web-0", f"fm-{node}-{bob}-shop-web-0"
    assert set(agent_node.containers()) == {a_name, b_name}
    a_nets = set(inspect(a_name)["NetworkSettings"]["Networks"])
    b_nets = set(inspect(b_name)["NetworkSettings"]["Networks"])
    assert a_nets == {f"fm-{alice}"}
    assert b_nets == {f"fm-{bob}"}

    bus = agent_node.probe.bus

    async def ask(verb: str, command: Request, reply: type[Reply]) -> Reply:
        return await bus.request(topics.node_cmd(node, verb), command, reply, timeout=20)

    # logs
    logs = await ask("logs", LogsCommand(tenant=alice, workload="a-web", tail=10), LogsReply)
    assert isinstance(logs, LogsReply)
    assert any("started a-web" in line for line in logs.lines)
    # upload
    content = b"hello from alice\n"
    up = await ask(
        "upload",
        UploadCommand(
            tenant=alice,
            workload="a-web",
            path="/data/in/greeting.txt",
            content_b64=base64.b64encode(content).decode(),
        ),
        UploadReply,
    )
    assert isinstance(up, UploadReply)
    assert up.size == len(content)
    assert docker("exec", a_name, "cat", "/data/in/greeting.txt") == content.decode()
    # restart
    started_before = inspect(a_name)["State"]["StartedAt"]
    ack = await ask("restart", RestartCommand(tenant=alice, workload="a-web"), AckReply)
    assert isinstance(ack, AckReply)
    assert inspect(a_name)["State"]["StartedAt"] != started_before
    assert inspect(a_name)["State"]["Running"]
    # report: only the asking tenant's workloads
    rep = await ask("report", ReportCommand(tenant=alice), ReportReply)
    assert isinstance(rep, ReportReply)
    assert rep.node == node
    assert [w.name for w in rep.workloads] == ["a-web"]
    assert rep.facts.cpu_count >= 1
    assert rep.usage.memory_total_bytes > 0

    # bob cannot touch alice's workload, by any verb
    b_started = inspect(a_name)["State"]["StartedAt"]
    for verb, command, model in (
        ("logs", LogsCommand(tenant=bob, workload="a-web"), LogsReply),
        ("restart", RestartCommand(tenant=bob, workload="a-web"), AckReply),
        (
            "upload",
            UploadCommand(tenant=bob, workload="a-web", path="/x", content_b64="eA=="),
            UploadReply,
        ),
    ):
        with pytest.raises(RemoteError) as err:
            await ask(verb, command, model)
        assert err.value.code is ErrorCode.UNAUTHORISED, verb
    assert inspect(a_name)["State"]["StartedAt"] == b_started
    assert "/x" not in docker("exec", a_name, "sh", "-c", "ls -d /x 2>/dev/null; true")
    # no tenant at all: refused (operator commands are off by default)
    with pytest.raises(RemoteError) as err:
        await ask("restart", RestartCommand(workload="b-web"), AckReply)
    assert err.value.code is ErrorCode.UNAUTHORISED
    # unknown workload
    with pytest.raises(RemoteError) as err:
        await ask("logs", LogsCommand(tenant=alice, workload="nope"), LogsReply)
    assert err.value.code is ErrorCode.NOT_FOUND
    # bad input: the bus answers invalid_payload; the agent answers a bad path invalid_request
    raw_bad = {"tenant": alice, "workload": "a-web", "tail": 0}
    with pytest.raises(RemoteError) as err:
        await bus.request(topics.node_cmd(node, "logs"), _Loose(**raw_bad), LogsReply, timeout=20)
    assert err.value.code is ErrorCode.INVALID_PAYLOAD
    with pytest.raises(RemoteError) as err:
        await ask(
            "upload",
            UploadCommand(tenant=alice, workload="a-web", path="/x", content_b64="!!notb64"),
            UploadReply,
        )
    assert err.value.code is ErrorCode.INVALID_REQUEST


class _Loose(LogsCommand):
    """A logs command that skips validation on our side, to send a bad one."""

    def __init__(self, **data: object) -> None:
        tail = data.pop("tail")
        super().__init__(**data)
        object.__setattr__(self, "tail", tail)
