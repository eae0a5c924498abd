"""What one site's cache pulls from the store crosses that site's WAN link only.

Three brokers as ``fogmesh up`` joins them (a cloud and two sites, each site's link with
``plan.link_rules``), the store on the cloud and a cache on each site. A tenant pushes 1 MB; a
node of site-a asks its cache, which pulls the artefact from the store. The store's answers
(binary chunk frames and the stat) come on the cache's own reply topic,
``fm/v1/ops/cache-site-a/reply/...``, which only site-a's link carries down: site-b's broker
receives none of the bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from fogmesh.artefacts import CacheConfig, CacheService, StoreConfig, StoreService
from fogmesh.bus import Bus, Handler, MessageContext, RawMessage, reply_allowed
from fogmesh.cli.artefacts import Pusher
from fogmesh.cli.fleet.plan import link_rules
from fogmesh.protocol import topics
from fogmesh.protocol.artefacts import (
    ARTEFACTS_DUTY,
    FETCH_VERB,
    ArtefactKind,
    FetchArtefact,
    FetchReady,
    StoreVerb,
    cache_duty,
)
from tests.agent.support import wait_for
from tests.artefacts.conftest import (
    FLEET_USERS,
    NODES,
    TENANT,
    app_tar,
    app_workload,
    bus_to,
    desire,
    node_bus,
)
from tests.support.buses import unique
from tests.support.mesh import MeshProcess
from tests.support.mesh_file import broker_spec, link_spec, port_of, write_mesh

SITES = ("site-a", "site-b")


@dataclass
class TwoSites:
    mesh: Path
    caches: dict[str, CacheService]

    def port(self, broker: str) -> int:
        return port_of(self.mesh, broker)


@pytest.fixture
async def two_sites(tmp_path: Path) -> AsyncIterator[TwoSites]:
    users: dict[str, Any] = {"users": FLEET_USERS}
    brokers = {"cloud": broker_spec(tmp_path, "cloud", split_horizon=False, **users)}
    brokers |= {site: broker_spec(tmp_path, site, **users) for site in SITES}
    links = [link_spec(f"{site}-cloud", site, "cloud", link_rules(site)) for site in SITES]
    mesh = write_mesh(tmp_path / "mesh.yaml", brokers, links)
    procs = [MeshProcess(mesh, name) for name in ("cloud", *SITES)]
    await asyncio.gather(*(asyncio.to_thread(p.start) for p in procs))
    svc = {"username": "svc", "password": "svc-pw"}
    store = StoreService(
        StoreConfig(
            broker={"port": port_of(mesh, "cloud"), **svc},
            client_id=unique("store"),
            data_dir=tmp_path / "store",
        )
    )
    caches = {
        site: CacheService(
            CacheConfig(
                broker={"port": port_of(mesh, site), **svc},
                client_id=unique(f"cache-{site}-"),
                site=site,
                data_dir=tmp_path / f"cache-{site}",
                http_host="127.0.0.1",
                http_port=0,
                request_timeout_s=10.0,
            )
        )
        for site in SITES
    }
    services: list[StoreService | CacheService] = [store, *caches.values()]
    tasks = [asyncio.create_task(s.run()) for s in services]
    try:
        for service, task in zip(services, tasks, strict=True):
            waiting = asyncio.create_task(service.ready.wait())
            await asyncio.wait([waiting, task], timeout=30, return_when=asyncio.FIRST_COMPLETED)
            waiting.cancel()
            if task.done():
                task.result()
            assert service.ready.is_set(), f"{type(service).__name__} did not start"
        yield TwoSites(mesh, caches)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for proc in procs:
            proc.kill()


def test_a_cache_asks_for_replies_on_its_own_duty() -> None:
    config = CacheConfig(broker={"port": 1}, client_id="cache-1", site="site-a")
    bus = Bus(config.bus_config())
    assert bus.reply_topic == "fm/v1/ops/cache-site-a/reply/cache-1"
    # the store may answer there (an internal request), never a tenant's API request
    read = topics.ops(ARTEFACTS_DUTY, StoreVerb.READ.value)
    assert reply_allowed(read, bus.reply_topic)
    assert not reply_allowed(topics.api(TENANT, "artefacts", "list"), bus.reply_topic)
    assert not reply_allowed(read, topics.ops(cache_duty("site-a"), FETCH_VERB))


async def test_a_sites_pull_crosses_no_other_sites_link(
    two_sites: TwoSites, tmp_path: Path
) -> None:
    tar = tmp_path / "app.tar"
    tar.write_bytes(app_tar(1 << 20))
    size = tar.stat().st_size
    seen: dict[str, list[tuple[str, int]]] = {site: [] for site in SITES}
    marks: dict[str, set[str]] = {}

    def recorder(site: str) -> Handler[RawMessage]:
        async def record(raw: RawMessage, ctx: MessageContext) -> None:
            seen[site].append((ctx.topic, len(raw.payload)))
            if raw.payload.startswith(b"marker-"):
                marks.setdefault(raw.payload.decode(), set()).add(site)

        return record

    async def settle(cloud: Bus) -> None:
        """Links keep order per direction: once a marker published on the cloud reached both
        sites, whatever the cloud sent down before it has arrived too."""
        marker = unique("marker-")
        # published again until both sites have it: a link that is still subscribing at the
        # cloud broker (the first run after start-up) does not get what came before
        async with asyncio.timeout(60):
            while marks.get(marker) != set(SITES):
                await cloud.publish_raw(topics.data(TENANT, "probe", "marker"), marker.encode())
                with contextlib.suppress(AssertionError):
                    await wait_for(lambda: marks.get(marker) == set(SITES), 2, "the marker")

    async with contextlib.AsyncExitStack() as stack:
        watchers: dict[str, Bus] = {}
        for site in SITES:
            watcher = await stack.enter_async_context(Bus(bus_to(two_sites.port(site))))
            watcher.subscribe("fm/v1/#", RawMessage, recorder(site), max_payload=1 << 20)
            await watcher.wait_connected(timeout=20)
            watchers[site] = watcher
        tenant = await stack.enter_async_context(Bus(bus_to(two_sites.port("cloud"), TENANT)))
        await tenant.wait_connected(timeout=20)
        cloud = await stack.enter_async_context(Bus(bus_to(two_sites.port("cloud"))))
        await cloud.wait_connected(timeout=20)
        status = await Pusher(tenant, TENANT, tar, kind=ArtefactKind.APP).run()
        assert status.complete
        await settle(cloud)  # the push's own answers go to the tenant, wherever it may be
        for box in seen.values():
            box.clear()

        node = NODES[0]
        await desire(watchers["site-a"], node, 1, app_workload("shop-app-0", status.ref))
        asking_bus = node_bus(two_sites.port("site-a"), node)
        async with Bus(asking_bus) as asking:
            await asking.wait_connected(timeout=20)
            ready = await asking.request(
                topics.ops(cache_duty("site-a"), FETCH_VERB),
                FetchArtefact(ref=status.ref, tenant=TENANT, node=node),
                FetchReady,
                timeout=60,
            )
        assert ready.size == size
        assert two_sites.caches["site-a"].pulled_bytes == size

        await settle(cloud)

    def replies(site: str, *, but_to: str = "") -> list[tuple[str, int]]:
        return [
            (topic, n)
            for topic, n in seen[site]
            if "/reply/" in topic and not (but_to and topic.startswith(but_to))
        ]

    assert sum(n for _, n in replies("site-a")) >= size  # the chunks came down site-a's link
    # site-b sees none of the store's answers to site-a's cache; only the cache's short answer
    # to the node (fm/v1/reply/# crosses everywhere: accounts made at runtime get theirs)
    to_node = f"fm/v1/reply/{node}/"
    assert replies("site-b", but_to=to_node) == []
    assert sum(n for _, n in replies("site-b")) < 2048
