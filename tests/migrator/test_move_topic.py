"""The scheduler's ``move`` is the migrator's alone: served on ``fm/v1/ops/scheduler/move``,
which the embedded broker's ACL lets only service accounts publish; a tenant's ``apps/move``
is no action of the apps API."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from fogmesh.broker.acl import Identity, RoleTable
from fogmesh.bus import Bus, BusConfig, MessageContext
from fogmesh.protocol import ErrorCode, RemoteError, topics
from fogmesh.protocol.apps import APPS_RESOURCE, AppAction, AppListReply, ListApps
from fogmesh.protocol.audit import AuditRecord
from fogmesh.protocol.migration import MoveReply, MoveWorkload
from fogmesh.scheduler import SchedulerService
from tests.agent.support import wait_for
from tests.scheduler.harness import running, scheduler_config
from tests.support.buses import unique
from tests.support.mesh import MeshProcess, start_alone
from tests.support.mesh_file import PASSWORDS

MOVE = topics.ops("scheduler", AppAction.MOVE)


def _bus(port: int, username: str) -> Bus:
    config = BusConfig(
        host="127.0.0.1", port=port, client_id=unique(f"{username}-"), username=username,
        password=PASSWORDS[username], reconnect_base=0.1, reconnect_cap=1.0, keepalive=5,
    )  # fmt: skip
    return Bus(config)


@contextlib.asynccontextmanager
async def _scheduler(tmp_path: Path, procs: list[MeshProcess]) -> AsyncIterator[int]:
    """The embedded broker with the test accounts and a scheduler leading on it (as ``svc``)."""
    port = start_alone(tmp_path, procs, "site")[1]
    config = scheduler_config(
        port, tmp_path / "sched", client_id=unique("sched"), username="svc",
        password=PASSWORDS["svc"],
    )  # fmt: skip
    sched = SchedulerService(config)
    async with running(sched):
        await wait_for(sched.ready.is_set, 60, "the scheduler leads")
        yield port


async def test_a_tenants_move_is_refused_and_a_services_is_answered(
    tmp_path: Path, procs: list[MeshProcess]
) -> None:
    async with (
        _scheduler(tmp_path, procs) as port,
        _bus(port, "svc") as svc,
        _bus(port, "acme") as acme,
    ):
        audits: list[AuditRecord] = []

        async def on_audit(record: AuditRecord, ctx: MessageContext) -> None:
            audits.append(record)

        svc.subscribe(topics.audit_filter(), AuditRecord, on_audit)
        await svc.wait_connected(timeout=20)
        await acme.wait_connected(timeout=20)

        def move() -> MoveWorkload:  # a fresh request id each: replies are matched by it
            return MoveWorkload(workload="shop-web-0", to="n1", tenant="acme")

        # the ACL drops it at the broker: no answer ever comes, nothing is audited or moved
        refused = asyncio.create_task(acme.request(MOVE, move(), MoveReply, timeout=300))
        # ... while the tenant's later requests are served (the same connection, in order)
        with pytest.raises(RemoteError) as info:
            await acme.request(
                topics.api("acme", APPS_RESOURCE, AppAction.MOVE), move(), MoveReply, timeout=30
            )
        assert info.value.error.code is ErrorCode.INVALID_REQUEST  # no such apps action
        listed = await acme.request(
            topics.api("acme", APPS_RESOURCE, AppAction.LIST), ListApps(), AppListReply, timeout=30
        )
        assert listed.apps == []
        # a service's move reaches the scheduler and is answered (no such workload here)
        with pytest.raises(RemoteError) as info:
            await svc.request(MOVE, move(), MoveReply, timeout=30)
        assert info.value.error.code is ErrorCode.NOT_FOUND
        await wait_for(lambda: any(a.topic == MOVE for a in audits), 30, "the service's audit")
        await wait_for(
            lambda: any(a.action == AppAction.LIST.value for a in audits), 30, "the list's audit"
        )
        assert not refused.done()
        assert [a.source for a in audits if a.topic == MOVE] == [svc.config.client_id]
        refused.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await refused


def test_only_services_are_granted_the_ops_tree() -> None:
    """The built-in roles (the embedded broker's and the rendered Mosquitto ACL's source)."""
    table = RoleTable()
    tenant = Identity(username="acme", client_id="acme-cli", role="tenant", tenant="acme")
    node = Identity(username="edge-1", client_id="edge-1-agent", role="node", node="edge-1")
    service = Identity(username="migrator", client_id="migrator", role="service")
    for who in (tenant, node):
        assert not table.may_publish(who, MOVE), who.role
    assert table.may_publish(service, MOVE)
