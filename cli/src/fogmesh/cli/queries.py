"""The CLI's requests over the bus: one function per question, each returning models."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import Awaitable, Callable
from pathlib import Path

import pydantic_core
from pydantic import ValidationError

from fogmesh.bus import Bus, Handler, MessageContext, RawMessage, reply_topic_for
from fogmesh.cli.errors import CliError
from fogmesh.cli.session import CliSettings
from fogmesh.protocol import (
    APPS_RESOURCE,
    EVENTS_RESOURCE,
    MAX_ID_LENGTH,
    NODES_RESOURCE,
    WORKLOADS_RESOURCE,
    AckReply,
    AppAction,
    BusError,
    DownloadCommand,
    DownloadReply,
    ErrorReply,
    LogsCommand,
    LogsReply,
    RemoteError,
    UploadCommand,
    UploadReply,
    parse_topic,
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
from fogmesh.protocol.workload_api import (
    FILE_RELAY_TIMEOUT_S,
    RELAY_TIMEOUT_S,
    WORKLOAD_ACTIONS,
    WorkloadAction,
)

__all__ = [
    "delete_app",
    "deploy_app",
    "download_file",
    "fetch_logs",
    "find_workload",
    "follow_events",
    "follow_logs",
    "list_apps",
    "list_events",
    "list_nodes",
    "list_workloads",
    "scale_app",
    "stream_reply_topic",
    "upload_file",
    "watch",
    "workload_command",
]

LinesSink = Callable[[list[str]], None]


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


async def watch(
    bus: Bus, s: CliSettings, refresh: Callable[[], Awaitable[None]], *, settle_s: float = 0.5
) -> None:
    """``refresh()`` now, then once after each burst of events the account reads, until
    cancelled (Ctrl-C): pushed, never polled. A deploy's many events make one refresh."""
    changed = asyncio.Event()

    async def on_event(_event: Event, _ctx: MessageContext) -> None:
        changed.set()

    follow_events(bus, s, on_event)
    await refresh()
    while True:
        await changed.wait()
        await asyncio.sleep(settle_s)
        changed.clear()
        await refresh()


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
    """The last ``tail`` lines of a workload's output (the registry asks its node's agent)."""
    reply = await bus.request(
        topics.api(s.tenant, WORKLOADS_RESOURCE, WorkloadAction.LOGS),
        LogsCommand(workload=name, tail=tail),
        LogsReply,
        timeout=max(s.timeout, RELAY_TIMEOUT_S + 5.0),
    )
    return reply.lines


async def follow_logs(
    bus: Bus, s: CliSettings, name: str, *, tail: int, seconds: float, on_lines: LinesSink
) -> None:
    """Stream a workload's output to ``on_lines`` for up to ``seconds`` (the tail first).

    The agent sends the stream to this client's reply topic; leaving early (Ctrl-C) asks it
    to end the follow. A :class:`RemoteError` is raised for an error reply.
    """
    topic = topics.api(s.tenant, WORKLOADS_RESOURCE, WorkloadAction.LOGS)
    reply_to = stream_reply_topic(bus, topic)
    command = LogsCommand(workload=name, tail=tail, follow_s=seconds, reply_to=reply_to)
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    seen: set[int] = set()

    async def on_reply(raw: RawMessage, _ctx: MessageContext) -> None:
        try:
            data = pydantic_core.from_json(raw.payload)
            if not isinstance(data, dict) or data.get("correlation_id") != command.correlation_id:
                return
            if data.get("ok") is False:
                if not done.done():
                    done.set_exception(RemoteError(ErrorReply.model_validate(data).error))
                return
            reply = LogsReply.model_validate(data)
        except (ValueError, ValidationError):
            return  # not ours, or not a reply: the stream goes on
        if reply.seq in seen:
            return
        seen.add(reply.seq)
        on_lines(reply.lines)
        if reply.final and not done.done():
            done.set_result(None)

    bus.subscribe(reply_to, RawMessage, on_reply)
    await bus.publish(topic, command, qos=1)
    try:
        async with asyncio.timeout(seconds + max(s.timeout, RELAY_TIMEOUT_S) + 5.0):
            await done
    except TimeoutError as exc:
        raise CliError(f"the log follow of {name} ended without its last reply", code=5) from exc
    except asyncio.CancelledError:
        with contextlib.suppress(BusError, RemoteError):
            await bus.request(
                topic,
                LogsCommand(workload=name, end_follow=command.correlation_id),
                LogsReply,
                timeout=s.timeout,
            )
        raise


def stream_reply_topic(bus: Bus, topic: str) -> str:
    """A reply topic of this client's own for a stream of replies to a request on ``topic``
    (``.../reply/{account}/{client}-s``): the client's usual reply topic is the bus's, which
    hands each reply to its one pending request and drops the rest."""
    config = bus.config
    usual = parse_topic(
        reply_topic_for(topic, username=config.username, client_id=config.client_id)
    )
    if usual.account is None or usual.client is None:
        raise CliError(f"no reply topic for {topic}", code=2)
    return topics.reply(usual.account, f"{usual.client[: MAX_ID_LENGTH - 2]}-s")


async def workload_command(bus: Bus, s: CliSettings, action: WorkloadAction, name: str) -> str:
    """``stop``, ``start`` or ``restart`` one of the tenant's workloads; the agent's words."""
    _verb, model, _answer = WORKLOAD_ACTIONS[action]
    reply = await bus.request(
        topics.api(s.tenant, WORKLOADS_RESOURCE, action),
        model.model_validate({"workload": name}),
        AckReply,
        timeout=max(s.timeout, RELAY_TIMEOUT_S + 5.0),
    )
    return reply.message


async def upload_file(bus: Bus, s: CliSettings, name: str, source: Path, dest: str) -> UploadReply:
    """Put a local file into a workload at ``dest``."""
    try:
        data = await asyncio.to_thread(source.read_bytes)
    except OSError as exc:
        raise CliError(f"cannot read {source}: {exc.strerror}", code=2) from exc
    return await bus.request(
        topics.api(s.tenant, WORKLOADS_RESOURCE, WorkloadAction.UPLOAD),
        UploadCommand(workload=name, path=dest, content_b64=base64.b64encode(data).decode()),
        UploadReply,
        timeout=max(s.timeout, FILE_RELAY_TIMEOUT_S + 5.0),
    )


async def download_file(bus: Bus, s: CliSettings, name: str, source: str, dest: Path) -> int:
    """Copy the file ``source`` out of a workload to the local ``dest``; returns its size."""
    reply = await bus.request(
        topics.api(s.tenant, WORKLOADS_RESOURCE, WorkloadAction.DOWNLOAD),
        DownloadCommand(workload=name, path=source),
        DownloadReply,
        timeout=max(s.timeout, FILE_RELAY_TIMEOUT_S + 5.0),
    )
    data = base64.b64decode(reply.content_b64)
    try:
        await asyncio.to_thread(dest.write_bytes, data)
    except OSError as exc:
        raise CliError(f"cannot write {dest}: {exc.strerror}", code=2) from exc
    return len(data)
