"""The CLI's requests over the bus: one function per question, each returning models."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

from fogmesh.bus import Bus, Handler
from fogmesh.cli.errors import CliError
from fogmesh.cli.session import CliSettings
from fogmesh.protocol import (
    APPS_RESOURCE,
    EVENTS_RESOURCE,
    NODES_RESOURCE,
    WORKLOADS_RESOURCE,
    AppAction,
    LogsCommand,
    LogsReply,
    NodeVerb,
    UploadCommand,
    UploadReply,
    topics,
)
from fogmesh.protocol.apps import (
    AppDeletedReply,
    AppListReply,
    AppReply,
    AppSummary,
    DeleteApp,
    DeployApp,
    ListApps,
    ScaleApp,
)
from fogmesh.protocol.events import Event
from fogmesh.protocol.manifest import AppManifest
from fogmesh.protocol.queries import (
    EventListReply,
    ListEvents,
    ListNodes,
    ListWorkloads,
    NodeInfo,
    NodeListReply,
    WorkloadInfo,
    WorkloadListReply,
)

__all__ = [
    "delete_app",
    "deploy_app",
    "fetch_logs",
    "find_workload",
    "follow_events",
    "list_apps",
    "list_events",
    "list_nodes",
    "list_workloads",
    "scale_app",
    "upload_file",
]


async def list_nodes(bus: Bus, s: CliSettings, **filters: object) -> list[NodeInfo]:
    """Every node the registry knows, all pages."""
    found: list[NodeInfo] = []
    cursor: str | None = None
    while True:
        request = ListNodes.model_validate({"limit": 500, "cursor": cursor, **filters})
        reply = await bus.request(
            topics.api(s.tenant, NODES_RESOURCE, "list"), request, NodeListReply, timeout=s.timeout
        )
        found += reply.nodes
        cursor = reply.next_cursor
        if cursor is None:
            return found


async def list_workloads(bus: Bus, s: CliSettings, **filters: object) -> list[WorkloadInfo]:
    """The tenant's workloads, all pages."""
    found: list[WorkloadInfo] = []
    cursor: str | None = None
    while True:
        request = ListWorkloads.model_validate({"limit": 500, "cursor": cursor, **filters})
        reply = await bus.request(
            topics.api(s.tenant, WORKLOADS_RESOURCE, "list"),
            request,
            WorkloadListReply,
            timeout=s.timeout,
        )
        found += reply.workloads
        cursor = reply.next_cursor
        if cursor is None:
            return found


async def list_events(bus: Bus, s: CliSettings, since: float | None) -> list[Event]:
    """Events since a time, all pages, oldest first."""
    found: list[Event] = []
    cursor: str | None = None
    while True:
        request = ListEvents(limit=500, cursor=cursor, since=since)
        reply = await bus.request(
            topics.api(s.tenant, EVENTS_RESOURCE, "list"),
            request,
            EventListReply,
            timeout=s.timeout,
        )
        found += reply.events
        cursor = reply.next_cursor
        if cursor is None:
            return sorted(found, key=lambda e: e.ts)


def follow_events(bus: Bus, s: CliSettings, on_event: Handler[Event]) -> list[str]:
    """Subscribe ``on_event`` to the events the account may read; returns the filters.

    A tenant's own account (the tenant id is its username) reads only its tenant's events;
    any other account (an operator acting for a tenant) also reads the fleet's. Subscribing a
    tenant to fleet events would be refused by the embedded broker and, on Mosquitto, granted
    and silently empty.
    """
    filters = [topics.tenant_event_filter(s.tenant)]
    if not s.acts_as_tenant_account:
        filters.append(topics.fleet_event_filter())
    for flt in filters:
        bus.subscribe(flt, Event, on_event)
    return filters


async def list_apps(bus: Bus, s: CliSettings) -> list[AppSummary]:
    """The tenant's apps, as the scheduler holds them."""
    reply = await bus.request(
        topics.api(s.tenant, APPS_RESOURCE, AppAction.LIST),
        ListApps(),
        AppListReply,
        timeout=s.timeout,
    )
    return reply.apps


async def deploy_app(bus: Bus, s: CliSettings, manifest: AppManifest) -> AppReply:
    """Deploy (or fail with the scheduler's reasons)."""
    tenant = manifest.tenant or s.tenant
    return await bus.request(
        topics.api(tenant, APPS_RESOURCE, AppAction.DEPLOY),
        DeployApp(manifest=manifest),
        AppReply,
        timeout=max(s.timeout, 30.0),
    )


async def delete_app(bus: Bus, s: CliSettings, app: str) -> AppDeletedReply:
    """Delete an app; its workloads are removed from their nodes."""
    return await bus.request(
        topics.api(s.tenant, APPS_RESOURCE, AppAction.DELETE),
        DeleteApp(app=app),
        AppDeletedReply,
        timeout=s.timeout,
    )


async def scale_app(bus: Bus, s: CliSettings, app: str, component: str, n: int) -> AppReply:
    """Set a component's replica count."""
    return await bus.request(
        topics.api(s.tenant, APPS_RESOURCE, AppAction.SCALE),
        ScaleApp(app=app, component=component, replicas=n),
        AppReply,
        timeout=max(s.timeout, 30.0),
    )


async def find_workload(bus: Bus, s: CliSettings, name: str) -> WorkloadInfo:
    """Where a workload of the tenant runs, or a :class:`CliError`."""
    for workload in await list_workloads(bus, s):
        if workload.name == name:
            return workload
    raise CliError(f"no workload {name!r} for tenant {s.tenant!r}", code=4)


async def fetch_logs(bus: Bus, s: CliSettings, name: str, tail: int) -> list[str]:
    """The last ``tail`` lines of a workload's output, from its node's agent."""
    workload = await find_workload(bus, s, name)
    reply = await bus.request(
        topics.node_cmd(workload.node, NodeVerb.LOGS),
        LogsCommand(tenant=s.tenant, workload=name, tail=tail),
        LogsReply,
        timeout=s.timeout,
    )
    return reply.lines


async def upload_file(bus: Bus, s: CliSettings, name: str, source: Path, dest: str) -> UploadReply:
    """Put a local file into a workload at ``dest``."""
    workload = await find_workload(bus, s, name)
    try:
        data = await asyncio.to_thread(source.read_bytes)
    except OSError as exc:
        raise CliError(f"cannot read {source}: {exc.strerror}", code=2) from exc
    return await bus.request(
        topics.node_cmd(workload.node, NodeVerb.UPLOAD),
        UploadCommand(
            tenant=s.tenant,
            workload=name,
            path=dest,
            content_b64=base64.b64encode(data).decode(),
        ),
        UploadReply,
        timeout=max(s.timeout, 30.0),
    )
