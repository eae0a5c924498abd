"""What the fleet holds, listed: ``fogmesh nodes``, ``workloads``, ``apps`` and ``events``
(a table, or ``-o json|yaml``; ``--watch`` lists again after each change)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Annotated

import typer

from fogmesh.bus import Bus, MessageContext
from fogmesh.cli import context, queries
from fogmesh.cli.context import OutputOption, WatchOption
from fogmesh.cli.render import (
    OutputFormat,
    apps_table,
    events_table,
    nodes_table,
    show,
    workloads_table,
)
from fogmesh.protocol import Event
from fogmesh.protocol.queries import NodeInfo, WorkloadInfo

__all__ = ["apps", "events", "nodes", "register", "workloads"]


def nodes(
    ctx: typer.Context,
    *,
    state: Annotated[str | None, typer.Option(help="online, stale, offline or unreachable")] = None,
    arch: Annotated[str | None, typer.Option(help="e.g. x86_64")] = None,
    label: Annotated[list[str] | None, typer.Option(help="key=value, repeatable")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="the same as -o json")] = False,
    output: OutputOption = OutputFormat.TABLE,
    watch: WatchOption = False,
) -> None:
    """The fleet's nodes, as the registry sees them."""
    s = context.settings(ctx)
    labels = dict(item.split("=", 1) for item in label or [] if "=" in item)
    fmt = OutputFormat.JSON if as_json else output

    def fetch(bus: Bus) -> Awaitable[list[NodeInfo]]:
        return queries.list_nodes(bus, s, state=state, arch=arch, labels=labels)

    context.listing(s, fmt, nodes_table, fetch, watching=watch)


def workloads(
    ctx: typer.Context,
    app_name: Annotated[str | None, typer.Option("--app", help="only this app")] = None,
    node: Annotated[str | None, typer.Option(help="only this node")] = None,
    output: OutputOption = OutputFormat.TABLE,
    watch: WatchOption = False,
) -> None:
    """The tenant's workloads and where they run."""
    s = context.settings(ctx)

    def fetch(bus: Bus) -> Awaitable[list[WorkloadInfo]]:
        return queries.list_workloads(bus, s, app=app_name, node=node)

    context.listing(s, output, workloads_table, fetch, watching=watch)


def apps(
    ctx: typer.Context, output: OutputOption = OutputFormat.TABLE, watch: WatchOption = False
) -> None:
    """The tenant's apps."""
    s = context.settings(ctx)
    context.listing(s, output, apps_table, lambda bus: queries.list_apps(bus, s), watching=watch)


def events(
    ctx: typer.Context,
    since: Annotated[float, typer.Option(help="seconds back to start from")] = 3600.0,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", "--watch", "-w", help="keep printing new events")
    ] = False,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Recent events; with --follow, new ones as they happen (Ctrl-C to stop; with -o json
    or yaml, one array or list per batch)."""
    s = context.settings(ctx)

    async def work(bus: Bus) -> None:
        found = await queries.list_events(bus, s, time.time() - since)
        show(context.out, found, output, events_table)
        if not follow:
            return

        async def on_event(event: Event, _ctx: MessageContext) -> None:
            show(context.out, [event], output, events_table)

        queries.follow_events(bus, s, on_event)
        await asyncio.Event().wait()

    context.run(s, work)


def register(app: typer.Typer) -> None:
    """Add the listings to ``app``."""
    for command in (nodes, workloads, apps, events):
        app.command()(command)
