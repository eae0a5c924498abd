"""No tenant-controlled fetches: the scheduler refuses a tenant's manifest that names an
artefact by ``file://`` or ``http://`` URL unless the operator allowed that tenant URLs; a ref to
the store is accepted (whose it is, the site's cache judges: ``test_site_cache``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from fogmesh.bus import Bus
from fogmesh.protocol import ErrorCode, RemoteError, topics
from fogmesh.protocol.apps import AppReply, DeployApp
from fogmesh.protocol.manifest import AppManifest
from fogmesh.scheduler import SchedulerService
from tests.scheduler.harness import Fleet, client, running, scheduler_config, wait_for
from tests.support.brokers import BrokerProcess

OPERATOR_TENANT = "ops"


def _native(name: str, artefact: dict[str, str]) -> AppManifest:
    comp = {"name": "app", "runtime": "native", "artefact": artefact}
    return AppManifest.model_validate({"name": name, "components": [comp]})


@pytest.fixture
async def bus(amqtt_broker: BrokerProcess, tmp_path: Path) -> AsyncIterator[Bus]:
    config = scheduler_config(
        amqtt_broker.port, tmp_path / "state", artefact_url_tenants=[OPERATOR_TENANT]
    )
    service = SchedulerService(config)
    async with running(service), client(amqtt_broker.port, "tester") as bus:
        fleet = Fleet(bus)
        await fleet.start()
        await fleet.add("node-a")
        await wait_for(service.ready.is_set, "scheduler leads")
        await wait_for(lambda: len(service.tracker.nodes) == 1, "scheduler sees the node")
        try:
            yield bus
        finally:
            await fleet.stop()


@pytest.mark.parametrize("url", ["file:///etc/shadow", "http://169.254.169.254/latest/app.tar"])
async def test_a_tenants_artefact_url_is_refused(bus: Bus, url: str) -> None:
    deploy = DeployApp(manifest=_native("fetcher", {"url": url}))
    with pytest.raises(RemoteError) as refused:
        await bus.request(topics.api("acme", "apps", "deploy"), deploy, AppReply, timeout=15)
    assert refused.value.code is ErrorCode.UNAUTHORISED
    assert "fogmesh push" in refused.value.error.message

    allowed = DeployApp(manifest=_native("own", {"url": url}))
    reply = await bus.request(
        topics.api(OPERATOR_TENANT, "apps", "deploy"), allowed, AppReply, timeout=15
    )
    assert reply.app.name == "own"

    by_ref = DeployApp(manifest=_native("stored", {"ref": "sha256:" + "ab" * 32}))
    placed = await bus.request(topics.api("acme", "apps", "deploy"), by_ref, AppReply, timeout=15)
    assert placed.app.name == "stored"
