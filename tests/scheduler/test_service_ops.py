"""Scale, quotas, update retirement, stale nodes and the API's routing, on both brokers."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from fogmesh.bus import Bus, MessageContext, RawMessage
from fogmesh.protocol import ErrorCode, ErrorReply, RemoteError, topics
from fogmesh.protocol.apps import (
    AppAction,
    AppListReply,
    AppReply,
    DeployApp,
    GetApp,
    ListApps,
    ScaleApp,
    Unschedulable,
    UpdateApp,
)
from fogmesh.protocol.envelope import Request
from fogmesh.protocol.events import EventKind
from fogmesh.protocol.manifest import AppManifest
from fogmesh.protocol.workload import WorkloadPhase
from fogmesh.scheduler import SchedulerService
from fogmesh.scheduler.config import Quota
from fogmesh.scheduler.placement import Liveness
from tests.scheduler.harness import Fleet, manifest, scheduler_env, wait_for
from tests.support.brokers import BrokerProcess

TIMEOUT = 15.0
Env = tuple[SchedulerService, Fleet, Bus]


def api(tenant: str, action: str) -> str:
    return topics.api(tenant, "apps", action)


def versioned(m: AppManifest, version: str) -> AppManifest:
    return m.model_copy(update={"version": version})


async def deploy(bus: Bus, m: AppManifest, tenant: str = "acme") -> AppReply:
    return await bus.request(
        api(tenant, "deploy"), DeployApp(manifest=m), AppReply, timeout=TIMEOUT
    )


async def refused(bus: Bus, tenant: str, action: str, request: Request) -> RemoteError:
    """Send ``request`` and return the error it must be answered with."""
    with pytest.raises(RemoteError) as info:
        await bus.request(api(tenant, action), request, AppReply, timeout=TIMEOUT)
    return info.value


def generations(fleet: Fleet) -> dict[str, int]:
    return {n: s.generation for n, s in fleet.desired.items()}


# --- scale ---------------------------------------------------------------------------------------

NORTH_SOUTH = {
    "node-a": {"zone": "north"},
    "node-b": {"zone": "north"},
    "node-c": {"zone": "south"},
}


@pytest.fixture
async def zones(broker: BrokerProcess, tmp_path: Path) -> AsyncIterator[Env]:
    """Three nodes of 4 CPUs: a and b in zone north, c in zone south."""
    async with scheduler_env(broker.port, tmp_path / "state", NORTH_SOUTH) as env:
        yield env


async def test_scale_up_spreads_down_removes_and_impossible_changes_nothing(zones: Env) -> None:
    _service, fleet, bus = zones
    m = manifest(
        "svc", {"name": "w", "requests": {"cpu": 1}, "placement": {"labels": "zone == north"}}
    )
    first = await deploy(bus, m)
    home = first.app.placements[0].node
    assert home in {"node-a", "node-b"}
    await wait_for(lambda: fleet.where("svc-w-0") == [home], "replica 0 desired")

    async def scale(replicas: int) -> AppReply:
        req = ScaleApp(app="svc", component="w", replicas=replicas)
        return await bus.request(api("acme", "scale"), req, AppReply, timeout=TIMEOUT)

    # up: the new replica goes to the other north node (spread), never to the south node
    up = await scale(2)
    placed = {p.workload: p.node for p in up.app.placements}
    assert placed["svc-w-0"] == home  # the existing replica stays
    assert sorted(str(n) for n in placed.values()) == ["node-a", "node-b"]
    assert up.app.manifest.component("w").replicas == 2
    await wait_for(lambda: fleet.where("svc-w-1") == [placed["svc-w-1"]], "replica 1 desired")

    up = await scale(4)
    per_node = Counter(str(p.node) for p in up.app.placements)
    assert per_node == {"node-a": 2, "node-b": 2}
    names = [f"svc-w-{i}" for i in range(4)]
    await wait_for(lambda: all(len(fleet.where(n)) == 1 for n in names), "4 replicas desired")
    assert Counter(fleet.where(n)[0] for n in names) == {"node-a": 2, "node-b": 2}
    assert fleet.names("node-c") == []

    # down: the highest replicas leave their nodes' desired states; replica 0 stays
    down = await scale(1)
    assert [(p.workload, p.node) for p in down.app.placements] == [("svc-w-0", home)]
    await wait_for(lambda: all(not fleet.where(n) for n in names[1:]), "extra replicas removed")
    assert fleet.where("svc-w-0") == [home]

    # impossible: 4 CPUs per north node, 1 CPU a replica -> at most 8; nothing changes
    before = generations(fleet)
    err = await refused(bus, "acme", "scale", ScaleApp(app="svc", component="w", replicas=20))
    assert err.code is ErrorCode.UNSCHEDULABLE
    details = Unschedulable.model_validate(err.error.details)
    assert details.component == "w"
    assert details.reasons["node-c"].startswith("labels:")
    assert details.reasons["node-a"].startswith("cpu:")
    got = await bus.request(api("acme", "get"), GetApp(app="svc"), AppReply, timeout=TIMEOUT)
    assert got.app.manifest.component("w").replicas == 1
    assert [(p.workload, p.node) for p in got.app.placements] == [("svc-w-0", home)]
    # a later change is the next desired state: the refused scale wrote none
    await deploy(bus, manifest("marker", {"name": "m", "placement": {"node": str(home)}}))
    await wait_for(lambda: "marker-m-0" in fleet.names(str(home)), "marker desired")
    assert generations(fleet)[str(home)] == before[str(home)] + 1
    assert {n: g for n, g in generations(fleet).items() if n != home} == {
        n: g for n, g in before.items() if n != home
    }
    assert fleet.names(str(home)) == ["marker-m-0", "svc-w-0"]

    # scaling an unknown component is not_found
    err = await refused(bus, "acme", "scale", ScaleApp(app="svc", component="nope", replicas=1))
    assert err.code is ErrorCode.NOT_FOUND


# --- quotas --------------------------------------------------------------------------------------

QUOTAS = {
    "quotas": {"acme": Quota(max_apps=2, max_workloads=3, max_cpu=1.0, max_memory=2**30)},
    "default_quota": Quota(max_apps=1),
}


@pytest.fixture
async def quota_env(broker: BrokerProcess, tmp_path: Path) -> AsyncIterator[Env]:
    """Two nodes; acme: 2 apps, 3 workloads, 1 CPU, 1 GiB; any other tenant: 1 app."""
    nodes: dict[str, dict[str, str]] = {"node-a": {}, "node-b": {}}
    async with scheduler_env(broker.port, tmp_path / "state", nodes, **QUOTAS) as env:
        yield env


async def test_quotas_refuse_and_place_nothing(quota_env: Env) -> None:
    _service, fleet, bus = quota_env
    await deploy(bus, manifest("one", {"name": "c"}))  # 1 workload, 100m, 64Mi
    await wait_for(lambda: bool(fleet.where("one-c-0")), "first app desired")

    async def over(action: str, request: Request, resource: str, tenant: str = "acme") -> None:
        err = await refused(bus, tenant, action, request)
        assert err.code is ErrorCode.QUOTA_EXCEEDED, err
        assert err.error.details["resource"] == resource

    many = manifest("many", {"name": "c", "replicas": 3})
    await over("deploy", DeployApp(manifest=many), "workloads")
    hungry = manifest("hungry", {"name": "c", "requests": {"cpu": 1}})
    await over("deploy", DeployApp(manifest=hungry), "cpu")
    fat = manifest("fat", {"name": "c", "requests": {"memory": "1Gi"}})
    await over("deploy", DeployApp(manifest=fat), "memory")
    # scale and update are held to the quota too
    await over("scale", ScaleApp(app="one", component="c", replicas=4), "workloads")
    bigger = versioned(manifest("one", {"name": "c", "requests": {"cpu": "1500m"}}), "2")
    await over("update", UpdateApp(manifest=bigger), "cpu")
    # the second app fits; a third is one app too many
    await deploy(bus, manifest("two", {"name": "c"}))
    await over("deploy", DeployApp(manifest=manifest("three", {"name": "c"})), "apps")

    # another tenant is held to its own (default) quota, not acme's usage
    other = await deploy(bus, manifest("many", {"name": "c", "replicas": 3}), tenant="zeta")
    assert len(other.app.placements) == 3
    await over("deploy", DeployApp(manifest=manifest("more", {"name": "c"})), "apps", "zeta")

    # nothing refused was placed or written
    listing = await bus.request(api("acme", "list"), ListApps(), AppListReply, timeout=TIMEOUT)
    assert [(a.name, a.workloads) for a in listing.apps] == [("one", 1), ("two", 1)]
    got = await bus.request(api("acme", "get"), GetApp(app="one"), AppReply, timeout=TIMEOUT)
    assert (got.app.version, got.app.manifest.component("c").replicas) == ("1", 1)
    await wait_for(
        lambda: sum(len(s.workloads) for s in fleet.desired.values()) == 5, "desired states"
    )
    desired = [w for s in fleet.desired.values() for w in s.workloads]
    assert sorted((w.tenant, w.app) for w in desired) == [
        ("acme", "one"), ("acme", "two"), ("zeta", "many"), ("zeta", "many"), ("zeta", "many"),
    ]  # fmt: skip
    assert all(w.app_version == "1" for w in desired)


# --- update: retirement and the in-place fallback -------------------------------------------------


@pytest.fixture
async def pair(broker: BrokerProcess, tmp_path: Path) -> AsyncIterator[Env]:
    """Two nodes of 4 CPUs (a, b)."""
    nodes: dict[str, dict[str, str]] = {"node-a": {}, "node-b": {}}
    async with scheduler_env(broker.port, tmp_path / "state", nodes) as env:
        yield env


async def test_old_version_retires_once_the_new_one_runs(pair: Env) -> None:
    _service, fleet, bus = pair
    first = await deploy(bus, manifest("roll", {"name": "c"}))
    old_node = str(first.app.placements[0].node)
    new_node = "node-b" if old_node == "node-a" else "node-a"
    m2 = versioned(manifest("roll", {"name": "c", "env": {"V": "2"}}), "2")
    await bus.request(api("acme", "update"), UpdateApp(manifest=m2), AppReply, timeout=TIMEOUT)
    await wait_for(lambda: fleet.where("roll-c-0") == ["node-a", "node-b"], "both versions")
    [new_spec] = fleet.specs(new_node)
    [old_spec] = fleet.specs(old_node)
    assert (new_spec.app_version, old_spec.app_version) == ("2", "1")

    # not yet: the new version is starting, and the old version running elsewhere proves nothing
    await fleet.report(new_node, [new_spec], WorkloadPhase.STARTING)
    await fleet.report(old_node, [old_spec])
    await asyncio.sleep(1.0)  # several ticks: gives a wrong retirement the chance to happen
    assert fleet.where("roll-c-0") == ["node-a", "node-b"]
    got = await bus.request(api("acme", "get"), GetApp(app="roll"), AppReply, timeout=TIMEOUT)
    assert [(p.node, p.version, p.retiring) for p in got.app.placements] == [
        (new_node, "2", False), (old_node, "1", True),
    ]  # fmt: skip

    # the node of the new version reports it running: the old one leaves desired
    await fleet.report(new_node, [new_spec])
    await wait_for(lambda: fleet.where("roll-c-0") == [new_node], "old version retired")
    assert fleet.names(old_node) == []
    got = await bus.request(api("acme", "get"), GetApp(app="roll"), AppReply, timeout=TIMEOUT)
    assert [(p.node, p.version, p.retiring) for p in got.app.placements] == [(new_node, "2", False)]


async def test_update_that_does_not_fit_beside_replaces_in_place(pair: Env) -> None:
    _service, fleet, bus = pair
    # 3 CPUs a replica, 4 a node: one replica per node, no room for a second version beside
    m = manifest("big", {"name": "c", "replicas": 2, "requests": {"cpu": 3}})
    await deploy(bus, m)
    await wait_for(lambda: len(fleet.names("node-a") + fleet.names("node-b")) == 2, "deployed")
    m2 = versioned(manifest("big", {"name": "c", "replicas": 2, "requests": {"cpu": 3},
                                    "env": {"V": "2"}}), "2")  # fmt: skip
    reply = await bus.request(
        api("acme", "update"), UpdateApp(manifest=m2), AppReply, timeout=TIMEOUT
    )
    assert [p.retiring for p in reply.app.placements] == [False, False]
    assert sorted(str(p.node) for p in reply.app.placements) == ["node-a", "node-b"]
    assert {p.version for p in reply.app.placements} == {"2"}

    def replaced() -> bool:
        specs = fleet.specs("node-a") + fleet.specs("node-b")
        return len(specs) == 2 and all(s.app_version == "2" for s in specs)

    await wait_for(replaced, "each node runs one new replica, no old one")
    assert len(fleet.names("node-a")) == len(fleet.names("node-b")) == 1
    await wait_for(
        lambda: any(e.kind is EventKind.APP_UPDATED and e.app == "big" for e in fleet.events),
        "app-updated event",
    )
    event = next(e for e in fleet.events if e.kind is EventKind.APP_UPDATED)
    assert event.data["beside"] is False

    # an update that does not fit at all is refused and changes nothing
    m3 = versioned(manifest("big", {"name": "c", "replicas": 2, "requests": {"cpu": 5}}), "3")
    err = await refused(bus, "acme", "update", UpdateApp(manifest=m3))
    assert err.code is ErrorCode.UNSCHEDULABLE
    got = await bus.request(api("acme", "get"), GetApp(app="big"), AppReply, timeout=TIMEOUT)
    assert got.app.version == "2"
    assert sorted((p.workload, p.version, p.retiring) for p in got.app.placements) == [
        ("big-c-0", "2", False), ("big-c-1", "2", False),
    ]  # fmt: skip
    assert replaced()


# --- stale nodes ---------------------------------------------------------------------------------


@pytest.fixture
async def stale_env(broker: BrokerProcess, tmp_path: Path) -> AsyncIterator[Env]:
    """Two nodes; stale after 2.5 missed heartbeats, lost only after 1,000."""
    nodes: dict[str, dict[str, str]] = {"node-a": {}, "node-b": {}}
    state = tmp_path / "state"
    async with scheduler_env(broker.port, state, nodes, stale_after=2.5, offline_after=1000) as env:
        yield env


async def test_stale_node_gets_no_new_workloads(stale_env: Env) -> None:
    service, fleet, bus = stale_env
    kept = await deploy(bus, manifest("kept", {"name": "c", "placement": {"node": "node-a"}}))
    assert kept.app.placements[0].node == "node-a"
    fleet.alive.discard("node-a")  # its heartbeats stop: late, but far from lost

    def liveness(node: str) -> Liveness:
        return service.tracker.liveness(service.tracker.nodes[node])

    await wait_for(lambda: liveness("node-a") is Liveness.STALE, "node-a stale")
    reply = await deploy(bus, manifest("fresh", {"name": "c", "replicas": 3}))
    assert {p.node for p in reply.app.placements} == {"node-b"}
    pinned = manifest("pinned", {"name": "c", "placement": {"node": "node-a"}})
    err = await refused(bus, "acme", "deploy", DeployApp(manifest=pinned))
    assert err.code is ErrorCode.UNSCHEDULABLE
    assert Unschedulable.model_validate(err.error.details).reasons["node-a"] == "node is stale"
    # stale is not lost: what node-a has stays there
    await wait_for(lambda: len(fleet.names("node-b")) == 3, "fresh desired on node-b")
    assert fleet.names("node-a") == ["kept-c-0"]
    assert liveness("node-a") is Liveness.STALE
    # heartbeats again: the node takes new work again
    fleet.alive.add("node-a")
    await wait_for(lambda: liveness("node-a") is Liveness.ONLINE, "node-a online again")
    again = await deploy(bus, pinned)
    assert again.app.placements[0].node == "node-a"


# --- routing -------------------------------------------------------------------------------------


async def test_unknown_action_is_answered_and_each_request_handled_once(pair: Env) -> None:
    _service, fleet, bus = pair
    err = await refused(bus, "acme", "bogus", ListApps())
    assert err.code is ErrorCode.INVALID_REQUEST
    # every action of the apps API; `move` is the scheduler's ops action, served elsewhere
    apps_actions = [a.value for a in AppAction if a is not AppAction.MOVE]
    for action in apps_actions:
        assert action in err.error.message
    assert err.error.details["known"] == apps_actions

    # every request is handled exactly once: one reply per request, on either broker
    replies: list[dict[str, Any]] = []

    async def on(msg: RawMessage, ctx: MessageContext) -> None:
        replies.append(json.loads(msg.payload))

    bus.subscribe("fm/v1/reply/acme/once-tester", RawMessage, on)
    await asyncio.sleep(0.5)  # let the subscription reach the broker
    topic = "fm/v1/reply/acme/once-tester"
    await bus.publish(api("acme", "bogus"), ListApps(reply_to=topic, correlation_id="b1"))
    dup = DeployApp(reply_to=topic, correlation_id="d1", manifest=manifest("x", {"name": "c"}))
    await bus.publish(api("acme", "deploy"), dup)
    await bus.publish(api("acme", "deploy"), dup.model_copy(update={"correlation_id": "d2"}))
    await wait_for(lambda: len(replies) >= 3, "three replies")
    await asyncio.sleep(1.0)  # a duplicate delivery would answer by now
    assert sorted(r["correlation_id"] for r in replies) == ["b1", "d1", "d2"]
    by_id = {r["correlation_id"]: r for r in replies}
    assert ErrorReply.model_validate(by_id["b1"]).error.code is ErrorCode.INVALID_REQUEST
    assert AppReply.model_validate(by_id["d1"]).app.name == "x"  # d1 deployed the app
    assert ErrorReply.model_validate(by_id["d2"]).error.code is ErrorCode.CONFLICT
    await wait_for(lambda: len(fleet.where("x-c-0")) == 1, "x desired once")


async def test_update_removing_a_component_drops_its_retiring_replica(pair: Env) -> None:
    _service, fleet, bus = pair
    await deploy(bus, manifest("gone", {"name": "c"}))
    m2 = versioned(manifest("gone", {"name": "c", "env": {"V": "2"}}), "2")
    await bus.request(api("acme", "update"), UpdateApp(manifest=m2), AppReply, timeout=TIMEOUT)
    await wait_for(lambda: len(fleet.where("gone-c-0")) == 2, "old version retiring beside")
    # version 3 has no component c: its old replica must not stay (retiring) either
    m3 = versioned(manifest("gone", {"name": "d"}), "3")
    reply = await bus.request(
        api("acme", "update"), UpdateApp(manifest=m3), AppReply, timeout=TIMEOUT
    )
    assert [(p.workload, p.retiring) for p in reply.app.placements] == [("gone-d-0", False)]
    # the next request right away still works (a leftover of c broke every placement)
    after = await deploy(bus, manifest("after", {"name": "c"}))
    assert after.app.placements[0].node in {"node-a", "node-b"}
    await wait_for(lambda: not fleet.where("gone-c-0"), "c removed from desired")
    assert len(fleet.where("gone-d-0")) == 1
