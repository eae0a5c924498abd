"""The scheduler checks at deploy time that each ref a manifest names is the tenant's own,
complete artefact in the store; a ref the store does not confirm is refused ``not_found``
(absent, unfinished or another tenant's, in the same words), and a deploy while the store does
not answer is accepted (docs/artefacts.md, "Manifests")."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from fogmesh.artefacts import StoreConfig, StoreService
from fogmesh.bus import Bus
from fogmesh.cli.artefacts import Pusher
from fogmesh.protocol import ErrorCode, RemoteError, topics
from fogmesh.protocol.apps import AppReply, DeployApp, UpdateApp
from fogmesh.protocol.artefacts import ArtefactKind, PushChunk, PushStatus
from fogmesh.protocol.manifest import AppManifest
from fogmesh.scheduler import SchedulerService
from tests.scheduler.harness import Fleet, client, running, scheduler_config, wait_for
from tests.support.brokers import BrokerProcess

TENANT, OTHER = "acme", "globex"


def _manifest(name: str, ref: str, *, image: bool = False) -> AppManifest:
    comp: dict[str, object] = (
        {"name": "box", "runtime": "docker", "image_ref": ref}
        if image
        else {"name": "app", "runtime": "native", "artefact": {"ref": ref}}
    )
    return AppManifest.model_validate({"name": name, "components": [comp]})


def _deploy(tenant: str) -> str:
    return topics.api(tenant, "apps", "deploy")


@dataclass
class Cloud:
    bus: Bus
    store_task: asyncio.Task[None]


@pytest.fixture
async def cloud(amqtt_broker: BrokerProcess, tmp_path: Path) -> AsyncIterator[Cloud]:
    store = StoreService(
        StoreConfig(
            broker={"port": amqtt_broker.port}, client_id="store", data_dir=tmp_path / "store"
        )
    )
    store_task = asyncio.create_task(store.run())
    service = SchedulerService(
        scheduler_config(amqtt_broker.port, tmp_path / "state", artefact_check_timeout_s=2.0)
    )
    try:
        async with running(service), client(amqtt_broker.port, "tester") as bus:
            fleet = Fleet(bus)
            await fleet.start()
            await fleet.add("node-a")
            await wait_for(service.ready.is_set, "scheduler leads")
            await wait_for(store.ready.is_set, "the store serves")
            await wait_for(lambda: len(service.tracker.nodes) == 1, "scheduler sees the node")
            try:
                yield Cloud(bus, store_task)
            finally:
                await fleet.stop()
    finally:
        store_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await store_task


async def _refused(bus: Bus, tenant: str, request: DeployApp | UpdateApp) -> RemoteError:
    action = "update" if isinstance(request, UpdateApp) else "deploy"
    with pytest.raises(RemoteError) as refused:
        await bus.request(topics.api(tenant, "apps", action), request, AppReply, timeout=15)
    return refused.value


async def test_deploy_checks_each_ref_at_the_store(cloud: Cloud, tmp_path: Path) -> None:
    bus = cloud.bus
    app = tmp_path / "app.tar"
    app.write_bytes(b"an app" * 1000)
    pushed = await Pusher(bus, TENANT, app, kind=ArtefactKind.APP).run()

    placed = await bus.request(
        _deploy(TENANT), DeployApp(manifest=_manifest("shop", pushed.ref)), AppReply, timeout=15
    )
    assert placed.app.name == "shop"

    never = "sha256:" + "ab" * 32
    unknown = await _refused(bus, TENANT, DeployApp(manifest=_manifest("ghost", never)))
    assert unknown.code is ErrorCode.NOT_FOUND
    assert never in unknown.error.message
    assert "fogmesh push" in unknown.error.message
    image = await _refused(bus, TENANT, DeployApp(manifest=_manifest("img", never, image=True)))
    assert image.code is ErrorCode.NOT_FOUND
    assert "box" in image.error.message
    update = await _refused(bus, TENANT, UpdateApp(manifest=_manifest("shop", never)))
    assert update.code is ErrorCode.NOT_FOUND

    # another tenant's ref: refused in the same words as an absent one
    theirs = await _refused(bus, OTHER, DeployApp(manifest=_manifest("copy", pushed.ref)))
    assert theirs.code is ErrorCode.NOT_FOUND
    assert theirs.error.message == unknown.error.message.replace(TENANT, OTHER).replace(
        never, pushed.ref
    )

    # an upload not finished is no artefact yet
    data = b"half" * 4096
    digest = hashlib.sha256(data).hexdigest()
    started = PushChunk(size=len(data), sha256_total=digest)
    await bus.request(topics.api(TENANT, "artefacts", "push"), started, PushStatus, timeout=15)
    half = await _refused(bus, TENANT, DeployApp(manifest=_manifest("half", f"sha256:{digest}")))
    assert half.code is ErrorCode.NOT_FOUND

    # the store away: accepted (a site's cache still judges every fetch)
    cloud.store_task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await cloud.store_task
    unchecked = await bus.request(
        _deploy(TENANT), DeployApp(manifest=_manifest("later", never)), AppReply, timeout=15
    )
    assert unchecked.app.name == "later"
