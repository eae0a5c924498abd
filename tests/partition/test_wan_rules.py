"""What ``fogmesh up``'s WAN links leave on their own side (``plan.link_rules``): three real
brokers joined as ``fogmesh up`` joins them (a cloud and two sites, the cloud relaying between
them). A lease stays on the broker of its duty, a node's own channels go up but never down to
another site, its desired state and commands still come down, and another site's link status
stays off a site."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiomqtt
import pytest

from fogmesh.cli.fleet.plan import link_rules
from tests.support.mesh import MeshProcess
from tests.support.mesh_file import PASSWORDS, broker_spec, link_spec, port_of, write_mesh

SITES = ("site-a", "site-b")
BROKERS = ("cloud", *SITES)


@pytest.fixture
async def mesh(tmp_path: Path) -> AsyncIterator[Path]:
    brokers = {"cloud": broker_spec(tmp_path, "cloud", split_horizon=False)}
    brokers |= {site: broker_spec(tmp_path, site) for site in SITES}
    links = [link_spec(f"{site}-cloud", site, "cloud", link_rules(site)) for site in SITES]
    path = write_mesh(tmp_path / "mesh.yaml", brokers, links)
    procs = [MeshProcess(path, name) for name in BROKERS]
    await asyncio.gather(*(asyncio.to_thread(p.start) for p in procs))
    try:
        yield path
    finally:
        for proc in procs:
            proc.kill()


def _client(mesh: Path, broker: str) -> aiomqtt.Client:
    return aiomqtt.Client(
        "127.0.0.1", port_of(mesh, broker), identifier=f"watch-{broker}-{uuid.uuid4().hex[:6]}",
        username="svc", password=PASSWORDS["svc"], timeout=20,
    )  # fmt: skip


async def test_what_stays_on_its_own_side(mesh: Path) -> None:
    seen: dict[str, set[str]] = {b: set() for b in BROKERS}
    async with contextlib.AsyncExitStack() as stack:
        clients = {b: await stack.enter_async_context(_client(mesh, b)) for b in BROKERS}

        async def read(broker: str, client: aiomqtt.Client) -> None:
            async for msg in client.messages:
                seen[broker].add(msg.topic.value)

        for broker, client in clients.items():
            await client.subscribe("fm/v1/#", qos=1)
            stack.enter_context(_cancelling(asyncio.create_task(read(broker, client))))

        async def everywhere(marker: str, origin: str) -> None:
            """Published on ``origin`` until every broker has it: links keep order per
            direction, so what ``origin`` sent before has crossed wherever it goes."""
            topic = f"fm/v1/data/acme/probe/{marker}"
            async with asyncio.timeout(90):
                while not all(topic in seen[b] for b in BROKERS):
                    await clients[origin].publish(topic, b"m", qos=1)
                    await asyncio.sleep(0.5)

        await everywhere("start", "cloud")  # every link subscribed on both sides
        sent = {
            "cloud": [
                "fm/v1/leases/scheduler",
                "fm/v1/leases/migrator",
                "fm/v1/nodes/edge-a/desired",
                "fm/v1/nodes/edge-a/cmd/logs",
                "fm/v1/store/scheduler/acme/shop",
            ],
            "site-a": [
                "fm/v1/leases/migrator-site-a",
                "fm/v1/nodes/edge-a/heartbeat",
                "fm/v1/nodes/edge-a/hello",
                "fm/v1/nodes/edge-b/cmd/state-put",
                "fm/v1/devices/acme/shop/edge-a/ttyUSB0",
            ],
            "site-b": [
                "fm/v1/leases/migrator-site-b",
                "fm/v1/nodes/edge-b/heartbeat",
                "fm/v1/nodes/edge-b/state",
                "fm/v1/audit/artefact-cache-site-b",
            ],
        }
        for origin, names in sent.items():
            for topic in names:
                await clients[origin].publish(topic, b"{}", qos=1, retain="leases" in topic)
        for origin in BROKERS:
            await everywhere(f"after-{origin}", origin)

    def on(broker: str) -> set[str]:
        return {t for t in seen[broker] if "/data/" not in t}

    # leases and the scheduler's store stay on the broker of their duty; readings on theirs
    assert {t for t in on("cloud") if "/leases/" in t} == {
        "fm/v1/leases/scheduler", "fm/v1/leases/migrator",
    }  # fmt: skip
    assert {t for t in on("site-a") if "/leases/" in t} == {"fm/v1/leases/migrator-site-a"}
    assert "fm/v1/store/scheduler/acme/shop" not in on("site-a") | on("site-b")
    assert "fm/v1/devices/acme/shop/edge-a/ttyUSB0" not in on("cloud")
    # a node's own channels go up, never down to another site
    assert {"fm/v1/nodes/edge-a/heartbeat", "fm/v1/nodes/edge-a/hello"} <= on("cloud")
    assert {"fm/v1/nodes/edge-b/heartbeat", "fm/v1/nodes/edge-b/state"} <= on("cloud")
    assert not {"fm/v1/nodes/edge-a/heartbeat", "fm/v1/nodes/edge-a/hello"} & on("site-b")
    assert not {"fm/v1/nodes/edge-b/heartbeat", "fm/v1/nodes/edge-b/state"} & on("site-a")
    # desired states and commands come down; a node's push reaches a peer of another site
    assert {"fm/v1/nodes/edge-a/desired", "fm/v1/nodes/edge-a/cmd/logs"} <= on("site-a")
    assert "fm/v1/nodes/edge-b/cmd/state-put" in on("site-b")
    # audit records go up only
    assert "fm/v1/audit/artefact-cache-site-b" in on("cloud")
    assert "fm/v1/audit/artefact-cache-site-b" not in on("site-a")
    # each link's status is on both of its brokers (it writes them itself), on no other site
    assert {"fm/v1/mesh/site-a/links/site-a-cloud", "fm/v1/mesh/site-b/links/site-b-cloud"} <= (
        on("cloud")
    )
    assert "fm/v1/mesh/site-b/links/site-b-cloud" not in on("site-a")
    assert "fm/v1/mesh/site-a/links/site-a-cloud" in on("site-a")


@contextlib.contextmanager
def _cancelling(task: asyncio.Task[None]) -> Iterator[asyncio.Task[None]]:
    try:
        yield task
    finally:
        task.cancel()
