"""Queries over the bus: pagination, filters, tenant scoping, and bad input answered with
error replies while the registry keeps running."""

from __future__ import annotations

import aiomqtt
import pytest
from pydantic import ConfigDict

from fogmesh.bus import Bus
from fogmesh.protocol import (
    ActualState,
    ErrorCode,
    Event,
    EventKind,
    Location,
    RemoteError,
    Request,
    RuntimeKind,
    WorkloadPhase,
    WorkloadStatus,
    topics,
)
from fogmesh.protocol.queries import (
    EventListReply,
    GetNode,
    GetRegistryApp,
    ListEvents,
    ListNodes,
    ListRegistryApps,
    ListWorkloads,
    NearFilter,
    NodeListReply,
    NodeReply,
    RegistryAppListReply,
    RegistryAppReply,
    WorkloadListReply,
)
from tests.registry.support import SimNode, ask, facts, run_registry, until
from tests.support.brokers import BrokerProcess
from tests.support.buses import bus_config, unique


class Loose(Request):
    """A request with any fields, to send what a typed client would refuse to build."""

    model_config = ConfigDict(extra="allow")


def status(name: str, tenant: str, app: str) -> WorkloadStatus:
    return WorkloadStatus(
        name=name,
        tenant=tenant,
        app=app,
        component="web",
        runtime=RuntimeKind.DOCKER,
        phase=WorkloadPhase.RUNNING,
    )


async def test_tenants_see_only_their_own_apps_workloads_and_events(
    mosquitto_broker: BrokerProcess, sqlite_url: str
) -> None:
    broker = mosquitto_broker
    node = unique("n")
    async with (
        run_registry(broker, sqlite_url, default_interval=5.0),
        Bus(bus_config(broker)) as client,
        SimNode(broker, node, interval=5.0) as sim,
    ):
        await client.wait_connected(timeout=15)
        assert sim.bus is not None
        actual = ActualState(
            node=node,
            observed_generation=1,
            workloads=[status("shop-web-0", "acme", "shop"), status("blog-web-0", "zeta", "blog")],
        )
        await sim.bus.publish(topics.node(node, "actual"), actual, retain=True)
        for tenant, app in (("acme", "shop"), ("zeta", "blog")):
            manifest = {"name": app, "version": "2", "components": [{"name": "web"}]}
            event = Event(kind=EventKind.APP_DEPLOYED, app=app, data={"manifest": manifest})
            await client.publish(topics.tenant_event(tenant, "app-deployed"), event)

        async def acme_apps() -> RegistryAppListReply | None:
            reply = await ask(
                client, "acme", "registry-apps/list", ListRegistryApps(), RegistryAppListReply
            )
            return reply if reply.apps else None

        apps = await until(acme_apps, what="acme's app recorded")
        assert [(a.name, a.tenant, a.version) for a in apps.apps] == [("shop", "acme", "2")]
        got = await ask(
            client, "acme", "registry-apps/get", GetRegistryApp(app="shop"), RegistryAppReply
        )
        assert got.app.manifest["components"] == [{"name": "web"}]
        with pytest.raises(RemoteError) as info:
            await ask(
                client, "acme", "registry-apps/get", GetRegistryApp(app="blog"), RegistryAppReply
            )
        assert info.value.code is ErrorCode.NOT_FOUND

        async def acme_workloads() -> WorkloadListReply | None:
            reply = await ask(client, "acme", "workloads/list", ListWorkloads(), WorkloadListReply)
            return reply if reply.workloads else None

        wl = await until(acme_workloads, what="acme's workloads recorded")
        assert [(w.name, w.tenant, w.node) for w in wl.workloads] == [("shop-web-0", "acme", node)]

        async def zeta_has_blog_event() -> bool:
            reply = await ask(client, "zeta", "events/list", ListEvents(), EventListReply)
            return any(e.app == "blog" for e in reply.events)

        await until(zeta_has_blog_event, what="zeta's event recorded")
        acme_events = await ask(
            client, "acme", "events/list", ListEvents(limit=500), EventListReply
        )
        apps_seen = {e.app for e in acme_events.events if e.app}
        assert apps_seen == {"shop"}
        assert any(e.kind is EventKind.NODE_JOINED and e.node == node for e in acme_events.events)

        # nodes are fleet-wide facts: both tenants see the node
        for tenant in ("acme", "zeta"):
            nodes = await ask(client, tenant, "nodes/list", ListNodes(), NodeListReply)
            assert node in [n.node for n in nodes.nodes]

        # a request that claims another tenant than its topic is refused
        with pytest.raises(RemoteError) as info:
            await ask(
                client, "acme", "workloads/list", ListWorkloads(tenant="zeta"), WorkloadListReply
            )
        assert info.value.code is ErrorCode.UNAUTHORISED


async def test_pagination_and_filters_over_the_bus(
    mosquitto_broker: BrokerProcess, sqlite_url: str
) -> None:
    broker = mosquitto_broker
    prefix = unique("p")
    spots = [(48.137, 11.575, "arm"), (48.371, 10.898, "x86"), (52.52, 13.405, "arm")]
    sims = [
        SimNode(
            broker,
            f"{prefix}-{i}",
            interval=5.0,
            facts=facts(
                arch="aarch64" if kind == "arm" else "x86_64",
                location=Location(lat=lat, lon=lon),
                labels={"zone": "south" if lat < 50 else "north"},
            ),
        )
        for i, (lat, lon, kind) in enumerate(spots * 2)
    ]
    async with (
        run_registry(broker, sqlite_url, default_interval=5.0),
        Bus(bus_config(broker)) as client,
    ):
        await client.wait_connected(timeout=15)
        for sim in sims:
            await sim.__aenter__()
        try:

            async def all_known() -> bool:
                reply = await ask(client, "t", "nodes/list", ListNodes(limit=500), NodeListReply)
                return sum(n.node.startswith(prefix) for n in reply.nodes) == 6

            await until(all_known, what="six nodes")
            seen: list[str] = []
            cursor = None
            pages = 0
            while True:
                reply = await ask(
                    client, "t", "nodes/list", ListNodes(limit=4, cursor=cursor), NodeListReply
                )
                seen += [n.node for n in reply.nodes]
                pages += 1
                cursor = reply.next_cursor
                if cursor is None:
                    break
            assert sorted(seen) == seen
            assert len(seen) == len(set(seen)) == 6
            assert pages == 2
            south_arm = await ask(
                client,
                "t",
                "nodes/list",
                ListNodes(arch="aarch64", labels={"zone": "south"}, state="online"),
                NodeListReply,
            )
            assert [n.node for n in south_arm.nodes] == [f"{prefix}-0", f"{prefix}-3"]
            near = await ask(
                client,
                "t",
                "nodes/list",
                ListNodes(near=NearFilter(lat=48.2, lon=11.4, km=100)),
                NodeListReply,
            )
            assert len(near.nodes) == 4  # Munich and Augsburg, twice; not Berlin
            assert all(n.distance_km is not None and n.distance_km < 100 for n in near.nodes)
        finally:
            for sim in sims:
                await sim.__aexit__(None, None, None)


async def test_bad_queries_and_malformed_heartbeats_leave_the_registry_running(
    broker: BrokerProcess, sqlite_url: str
) -> None:
    node = unique("n")
    async with (
        run_registry(broker, sqlite_url, default_interval=0.5) as registry,
        Bus(bus_config(broker)) as client,
        SimNode(broker, node, interval=0.5) as sim,
    ):
        await client.wait_connected(timeout=15)
        assert sim.bus is not None
        # malformed heartbeats: not JSON, wrong fields, another node's name, a negative seq
        hb_topic = topics.node(node, "heartbeat")
        await sim.bus.publish_raw(hb_topic, b"\x00not json")
        await sim.bus.publish_raw(hb_topic, b'{"node": "' + node.encode() + b'", "seq": -1}')
        await sim.bus.publish_raw(topics.node(node, "heartbeat"), b"[1, 2, 3]")
        other = unique("other")
        await sim.bus.publish_raw(
            hb_topic,
            (
                f'{{"node": "{other}", "seq": 1, "interval_s": 1, "usage": {{"cpu_percent": 1,'
                ' "memory_used_bytes": 1, "memory_total_bytes": 1, "disk_used_bytes": 1,'
                ' "disk_total_bytes": 1}}'
            ).encode(),
        )
        async with aiomqtt.Client(
            "127.0.0.1", broker.port, identifier=unique("raw"), username="raw"
        ) as raw:
            await raw.publish(topics.api("t", "nodes", "list"), b"{{{{", qos=1)

        bad: list[tuple[str, Request, ErrorCode]] = [
            ("nodes/list", Loose(limit=0), ErrorCode.INVALID_PAYLOAD),
            ("nodes/list", Loose(state="sleeping"), ErrorCode.INVALID_PAYLOAD),
            ("nodes/list", Loose(surprise=True), ErrorCode.INVALID_PAYLOAD),
            ("nodes/list", Loose(near={"lat": 95, "lon": 0, "km": 1}), ErrorCode.INVALID_PAYLOAD),
            ("nodes/list", Loose(cursor="not-a-cursor"), ErrorCode.INVALID_REQUEST),
            ("events/list", Loose(cursor="WyJub2RlcyIsIm4iXQ"), ErrorCode.INVALID_REQUEST),
            ("nodes/frobnicate", Loose(), ErrorCode.INVALID_REQUEST),
            ("nodes/get", Loose(node=unique("ghost")), ErrorCode.NOT_FOUND),
            ("nodes/get", Loose(), ErrorCode.INVALID_PAYLOAD),
        ]
        for path, request, code in bad:
            with pytest.raises(RemoteError) as info:
                await ask(client, "t", path, request, NodeListReply)
            assert info.value.code is code, (path, info.value)

        async def beating_on() -> NodeReply | None:
            try:
                reply = await ask(client, "t", "nodes/get", GetNode(node=node), NodeReply)
            except RemoteError:
                return None  # not written yet
            return (
                reply if reply.node.state == "online" and (reply.node.last_seq or 0) >= 4 else None
            )

        await until(beating_on, what="the real heartbeats still arrive and are stored")
        nodes = await ask(client, "t", "nodes/list", ListNodes(), NodeListReply)
        assert other not in [n.node for n in nodes.nodes]
        assert registry.writer.stats.dropped_batches == 0
