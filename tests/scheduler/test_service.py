"""The scheduler service against a real broker, with simulated nodes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from fogmesh.bus import Bus, MessageContext
from fogmesh.protocol import ErrorCode, ErrorReply, RemoteError, topics
from fogmesh.protocol.apps import (
    AppDeletedReply,
    AppListReply,
    AppReply,
    DeleteApp,
    DeployApp,
    GetApp,
    ListApps,
    Unschedulable,
    UpdateApp,
)
from fogmesh.protocol.events import EventKind
from fogmesh.protocol.node import NodeLiveness
from fogmesh.protocol.workload import DesiredState
from fogmesh.scheduler import SchedulerService
from tests.scheduler.harness import Fleet, client, manifest, running, scheduler_config, wait_for
from tests.support.brokers import BrokerProcess

TIMEOUT = 15.0


@pytest.fixture
async def env(broker: BrokerProcess, tmp_path: Path) -> AsyncIterator[tuple[Fleet, Bus]]:
    """A leading scheduler, a test client and a fleet of two nodes (a, b)."""
    service = SchedulerService(scheduler_config(broker.port, tmp_path / "state"))
    async with running(service), client(broker.port, "tester") as bus:
        fleet = Fleet(bus)
        await fleet.start()
        await fleet.add("node-a")
        await fleet.add("node-b")
        await wait_for(service.ready.is_set, "scheduler leads")
        await wait_for(lambda: len(service.tracker.nodes) == 2, "scheduler sees both nodes")
        try:
            yield fleet, bus
        finally:
            await fleet.stop()


def api(tenant: str, action: str) -> str:
    return topics.api(tenant, "apps", action)


async def test_deploy_publishes_retained_desired_states(
    env: tuple[Fleet, Bus], broker: BrokerProcess
) -> None:
    fleet, bus = env
    m = manifest("web", {"name": "srv", "replicas": 2})
    reply = await bus.request(
        api("acme", "deploy"), DeployApp(manifest=m), AppReply, timeout=TIMEOUT
    )
    placed = {p.workload: p.node for p in reply.app.placements}
    assert set(placed) == {"web-srv-0", "web-srv-1"}
    assert sorted(str(n) for n in placed.values()) == ["node-a", "node-b"]  # replicas spread
    await wait_for(lambda: fleet.where("web-srv-0") == [placed["web-srv-0"]], "desired arrives")
    # retained: a client that subscribes now still gets both desired states
    async with client(broker.port, "late") as late:
        got: dict[str, DesiredState] = {}

        async def on(msg: DesiredState, ctx: MessageContext) -> None:
            got[msg.node] = msg

        late.subscribe(topics.node_filter("desired"), DesiredState, on)
        await wait_for(lambda: len(got) == 2, "retained desired states")
    for node, state in got.items():
        assert state.generation >= 1
        assert [w.name for w in state.workloads] == [n for n, at in placed.items() if at == node]
        assert state.workloads[0].tenant == "acme"
    listing = await bus.request(api("acme", "list"), ListApps(), AppListReply, timeout=TIMEOUT)
    assert [a.name for a in listing.apps] == ["web"]
    other = await bus.request(api("zeta", "list"), ListApps(), AppListReply, timeout=TIMEOUT)
    assert other.apps == []


async def test_anti_affinity_uses_two_nodes(env: tuple[Fleet, Bus]) -> None:
    fleet, bus = env
    m = manifest(
        "sensing",
        {"name": "sensor", "anti_affinity": ["convolve"]},
        {"name": "convolve"},
    )
    reply = await bus.request(
        api("acme", "deploy"), DeployApp(manifest=m), AppReply, timeout=TIMEOUT
    )
    nodes = {p.component: p.node for p in reply.app.placements}
    assert nodes["sensor"] != nodes["convolve"]
    await wait_for(lambda: len(fleet.where("sensing-sensor-0")) == 1, "sensor desired")
    await wait_for(lambda: len(fleet.where("sensing-convolve-0")) == 1, "convolve desired")
    assert fleet.where("sensing-sensor-0") != fleet.where("sensing-convolve-0")


@pytest.mark.parametrize("how", ["state-offline", "no-heartbeat"])
async def test_workloads_of_a_lost_node_are_placed_again(env: tuple[Fleet, Bus], how: str) -> None:
    fleet, bus = env
    m = manifest("job", {"name": "w"})
    reply = await bus.request(
        api("acme", "deploy"), DeployApp(manifest=m), AppReply, timeout=TIMEOUT
    )
    first = reply.app.placements[0].node
    assert first is not None
    other = "node-b" if first == "node-a" else "node-a"
    await wait_for(lambda: fleet.where("job-w-0") == [first], "first desired")
    fleet.alive.discard(first)
    if how == "state-offline":
        await fleet.set_state(first, NodeLiveness.OFFLINE)
    await wait_for(lambda: fleet.where("job-w-0") == [other], "moved to the other node")
    assert fleet.names(first) == []
    await wait_for(
        lambda: any(e.kind is EventKind.REPLACED and e.workload == "job-w-0" for e in fleet.events),
        "replaced event",
    )
    event = next(e for e in fleet.events if e.kind is EventKind.REPLACED)
    assert event.data == {"from": first, "to": other}
    got = await bus.request(api("acme", "get"), GetApp(app="job"), AppReply, timeout=TIMEOUT)
    assert got.app.placements[0].node == other


async def test_impossible_manifest_is_refused_with_reasons(env: tuple[Fleet, Bus]) -> None:
    fleet, bus = env
    m = manifest("huge", {"name": "c", "requests": {"cpu": 64}})
    with pytest.raises(RemoteError) as info:
        await bus.request(api("acme", "deploy"), DeployApp(manifest=m), AppReply, timeout=TIMEOUT)
    assert info.value.code is ErrorCode.UNSCHEDULABLE
    details = Unschedulable.model_validate(info.value.error.details)
    assert set(details.reasons) == {"node-a", "node-b"}
    assert all(r.startswith("cpu:") for r in details.reasons.values())
    # nothing was written: a later, possible deploy is the first desired state either node gets
    ok = manifest("small", {"name": "c"})
    await bus.request(api("acme", "deploy"), DeployApp(manifest=ok), AppReply, timeout=TIMEOUT)
    await wait_for(lambda: bool(fleet.where("small-c-0")), "small placed")
    for state in fleet.desired.values():
        assert all(w.app != "huge" for w in state.workloads)
    listing = await bus.request(api("acme", "list"), ListApps(), AppListReply, timeout=TIMEOUT)
    assert [a.name for a in listing.apps] == ["small"]


async def test_another_tenant_cannot_delete(env: tuple[Fleet, Bus]) -> None:
    fleet, bus = env
    m = manifest("mine", {"name": "c"})
    await bus.request(api("acme", "deploy"), DeployApp(manifest=m), AppReply, timeout=TIMEOUT)
    with pytest.raises(RemoteError) as info:  # its own namespace: it has no such app
        await bus.request(api("evil", "delete"), DeleteApp(app="mine"), AppDeletedReply)
    assert info.value.code is ErrorCode.NOT_FOUND
    with pytest.raises(RemoteError) as info:  # acme's namespace, but the request says evil
        await bus.request(
            api("acme", "delete"), DeleteApp(app="mine", tenant="evil"), AppDeletedReply
        )
    assert info.value.code is ErrorCode.UNAUTHORISED
    got = await bus.request(api("acme", "get"), GetApp(app="mine"), AppReply, timeout=TIMEOUT)
    assert got.app.placements[0].node is not None
    gone = await bus.request(
        api("acme", "delete"), DeleteApp(app="mine"), AppDeletedReply, timeout=TIMEOUT
    )
    assert gone.removed == ["mine-c-0"]
    await wait_for(lambda: not fleet.where("mine-c-0"), "workload removed from desired")


async def test_malformed_requests_get_errors_and_service_keeps_running(
    env: tuple[Fleet, Bus],
) -> None:
    _fleet, bus = env
    errors: list[ErrorReply] = []

    async def on(msg: ErrorReply, ctx: MessageContext) -> None:
        errors.append(msg)

    bus.subscribe("fm/v1/reply/acme/raw-tester", ErrorReply, on)
    await asyncio.sleep(0.5)  # let the subscription reach the broker
    await bus.publish_raw(api("acme", "deploy"), b"not json at all {")
    bad = (
        b'{"reply_to": "fm/v1/reply/acme/raw-tester", "correlation_id": "c1",'
        b' "manifest": {"name": "x"}}'
    )
    await bus.publish_raw(api("acme", "deploy"), bad)
    await wait_for(lambda: len(errors) == 1, "error reply")
    assert errors[0].correlation_id == "c1"
    assert errors[0].error.code is ErrorCode.INVALID_PAYLOAD
    assert any(f.loc.startswith("manifest") for f in errors[0].error.fields)
    m = manifest("after", {"name": "c"})
    reply = await bus.request(
        api("acme", "deploy"), DeployApp(manifest=m), AppReply, timeout=TIMEOUT
    )
    assert reply.app.placements[0].node in {"node-a", "node-b"}


async def test_update_starts_new_version_before_stopping_old(env: tuple[Fleet, Bus]) -> None:
    fleet, bus = env
    m = manifest("roll", {"name": "c"})
    first = await bus.request(
        api("acme", "deploy"), DeployApp(manifest=m), AppReply, timeout=TIMEOUT
    )
    old_node = first.app.placements[0].node
    m2 = manifest("roll", {"name": "c", "env": {"V": "2"}}).model_copy(update={"version": "2"})
    reply = await bus.request(
        api("acme", "update"), UpdateApp(manifest=m2), AppReply, timeout=TIMEOUT
    )
    active = [p for p in reply.app.placements if not p.retiring]
    retiring = [p for p in reply.app.placements if p.retiring]
    assert [p.version for p in active] == ["2"]
    assert active[0].node != old_node  # started beside the old one
    assert [(p.node, p.version) for p in retiring] == [(old_node, "1")]
    await wait_for(lambda: sorted(fleet.where("roll-c-0")) == ["node-a", "node-b"], "both run")
