"""The ``fogmesh`` command line: one entry point for people.

Every command that talks to the fleet goes through the bus like any other client; a broker
that cannot be reached is one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import ssl
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from pydantic import BaseModel, ValidationError
from rich.console import Console
from rich.table import Table

from fogmesh.bus import Bus, MessageContext
from fogmesh.cli import queries
from fogmesh.cli.errors import CliError
from fogmesh.cli.render import (
    OutputFormat,
    app_table,
    apps_table,
    events_table,
    nodes_table,
    show,
    workloads_table,
)
from fogmesh.cli.session import CliSettings, connect
from fogmesh.protocol import (
    BusError,
    ContractError,
    Event,
    RemoteError,
    Request,
    error_info_from_validation,
    topics,
)
from fogmesh.protocol.commands import MAX_FOLLOW_S
from fogmesh.protocol.manifest import load_manifest_text
from fogmesh.protocol.migration import (
    MIGRATIONS_RESOURCE,
    DrainNode,
    MigrateWorkload,
    MigrationAction,
    MigrationReply,
    StageOutcome,
)
from fogmesh.protocol.queries import NodeInfo, WorkloadInfo
from fogmesh.protocol.workload_api import WorkloadAction
from fogmesh.service import TLS_SETTINGS, BrokerSettings, configure_logging

__all__ = ["app", "main"]

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

app = typer.Typer(
    name="fogmesh",
    help="fogmesh: place, run and keep alive microservices on a fleet of edge nodes.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True, soft_wrap=True)


def _settings(ctx: typer.Context) -> CliSettings:
    settings = ctx.obj
    assert isinstance(settings, CliSettings)
    return settings


OutputOption = Annotated[
    OutputFormat, typer.Option("--output", "-o", help="table, or json / yaml (the reply's models)")
]
WatchOption = Annotated[
    bool, typer.Option("--watch", "-w", help="print again at each change (Ctrl-C to stop)")
]


def _listing(
    s: CliSettings,
    fmt: OutputFormat,
    table: Callable[[Iterable[M]], Table],
    fetch: Callable[[Bus], Awaitable[Sequence[M]]],
    *,
    watching: bool,
) -> None:
    """Print what ``fetch(bus)`` lists as ``fmt``; with ``watching``, again after each change."""

    async def work(bus: Bus) -> None:
        async def refresh() -> None:
            show(out, await fetch(bus), fmt, table)

        if watching:
            await queries.watch(bus, s, refresh)
        else:
            await refresh()

    _run(s, work)


def _run(settings: CliSettings, work: Callable[[Bus], Awaitable[T]]) -> T:
    async def go() -> T:
        async with connect(settings) as bus:
            return await work(bus)

    return asyncio.run(go())


@app.callback()
def _global(
    ctx: typer.Context,
    *,
    broker: Annotated[
        str | None, typer.Option(help="host:port of the broker (env FOGMESH_BROKER)")
    ] = None,
    tenant: Annotated[
        str | None, typer.Option(help="act as this tenant (env FOGMESH_TENANT)")
    ] = None,
    timeout: Annotated[float, typer.Option(help="seconds to wait for each answer")] = 10.0,
    tls: Annotated[
        bool | None, typer.Option("--tls", help="connect with TLS (env FOGMESH_BROKER_TLS)")
    ] = None,
    ca_file: Annotated[
        Path | None, typer.Option(help="CA bundle for the broker's certificate (implies --tls)")
    ] = None,
) -> None:
    """Options every command shares."""
    if broker:
        os.environ["FOGMESH_BROKER"] = broker
    settings = CliSettings.from_env()
    tls_options = settings.broker.model_dump(include=set(TLS_SETTINGS), exclude_unset=True)
    if tls or ca_file is not None:
        tls_options["tls"] = True
    if ca_file is not None:
        tls_options["ca_file"] = ca_file
    try:
        broker_settings = BrokerSettings.model_validate(tls_options)
        broker_settings.ssl_context()  # unreadable certificate files: one sentence, now
    except ValidationError as exc:
        raise CliError(
            f"bad broker settings: {error_info_from_validation(exc).message}", code=2
        ) from exc
    except (OSError, ssl.SSLError) as exc:
        raise CliError(f"bad TLS settings: {exc}", code=2) from exc
    ctx.obj = dataclasses.replace(
        settings, tenant=tenant or settings.tenant, timeout=timeout, broker=broker_settings
    )


@app.command()
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
    s = _settings(ctx)
    labels = dict(item.split("=", 1) for item in label or [] if "=" in item)
    fmt = OutputFormat.JSON if as_json else output

    def fetch(bus: Bus) -> Awaitable[list[NodeInfo]]:
        return queries.list_nodes(bus, s, state=state, arch=arch, labels=labels)

    _listing(s, fmt, nodes_table, fetch, watching=watch)


@app.command()
def workloads(
    ctx: typer.Context,
    app_name: Annotated[str | None, typer.Option("--app", help="only this app")] = None,
    node: Annotated[str | None, typer.Option(help="only this node")] = None,
    output: OutputOption = OutputFormat.TABLE,
    watch: WatchOption = False,
) -> None:
    """The tenant's workloads and where they run."""
    s = _settings(ctx)

    def fetch(bus: Bus) -> Awaitable[list[WorkloadInfo]]:
        return queries.list_workloads(bus, s, app=app_name, node=node)

    _listing(s, output, workloads_table, fetch, watching=watch)


@app.command()
def apps(
    ctx: typer.Context, output: OutputOption = OutputFormat.TABLE, watch: WatchOption = False
) -> None:
    """The tenant's apps."""
    s = _settings(ctx)
    _listing(s, output, apps_table, lambda bus: queries.list_apps(bus, s), watching=watch)


@app.command()
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
    s = _settings(ctx)

    async def work(bus: Bus) -> None:
        show(out, await queries.list_events(bus, s, time.time() - since), output, events_table)
        if not follow:
            return

        async def on_event(event: Event, _ctx: MessageContext) -> None:
            show(out, [event], output, events_table)

        queries.follow_events(bus, s, on_event)
        await asyncio.Event().wait()

    _run(s, work)


@app.command()
def deploy(
    ctx: typer.Context, file: Annotated[Path, typer.Argument(help="manifest (YAML or JSON)")]
) -> None:
    """Deploy an app from its manifest."""
    s = _settings(ctx)
    try:
        manifest = load_manifest_text(file.read_text(), tenant=None)
    except OSError as exc:
        raise CliError(f"cannot read {file}: {exc.strerror}", code=2) from exc
    except ValidationError as exc:
        raise CliError(f"{file}: {error_info_from_validation(exc).message}", code=2) from exc
    reply = _run(s, lambda bus: queries.deploy_app(bus, s, manifest))
    out.print(app_table(reply.app))


@app.command()
def delete(ctx: typer.Context, app_name: Annotated[str, typer.Argument(metavar="APP")]) -> None:
    """Delete an app and remove its workloads."""
    s = _settings(ctx)
    reply = _run(s, lambda bus: queries.delete_app(bus, s, app_name))
    out.print(f"deleted {reply.app}: {len(reply.removed)} workloads removed")


@app.command()
def scale(
    ctx: typer.Context,
    app_name: Annotated[str, typer.Argument(metavar="APP")],
    component: str,
    replicas: int,
) -> None:
    """Set how many replicas of a component run."""
    s = _settings(ctx)
    reply = _run(s, lambda bus: queries.scale_app(bus, s, app_name, component, replicas))
    out.print(app_table(reply.app))


@app.command()
def logs(
    ctx: typer.Context,
    workload: str,
    tail: Annotated[int, typer.Option(help="how many lines")] = 100,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="keep printing new lines")] = False,
    follow_for: Annotated[
        float, typer.Option("--for", help="with --follow: stop after this many seconds")
    ] = MAX_FOLLOW_S,
) -> None:
    """The last lines of a workload's output; with --follow, new ones as they come (Ctrl-C
    or --for ends it)."""
    s = _settings(ctx)

    def show(lines: list[str]) -> None:
        for line in lines:
            out.print(line, markup=False, highlight=False)

    if not follow:
        show(_run(s, lambda bus: queries.fetch_logs(bus, s, workload, tail)))
        return
    seconds = min(max(follow_for, 1.0), MAX_FOLLOW_S)
    _run(s, lambda bus: queries.follow_logs(
        bus, s, workload, tail=tail, seconds=seconds, on_lines=show
    ))  # fmt: skip


def _workload_command(ctx: typer.Context, action: WorkloadAction, workload: str) -> None:
    s = _settings(ctx)
    out.print(_run(s, lambda bus: queries.workload_command(bus, s, action, workload)))


@app.command()
def stop(ctx: typer.Context, workload: str) -> None:
    """Stop a workload; it stays stopped until start (or restart)."""
    _workload_command(ctx, WorkloadAction.STOP, workload)


@app.command()
def start(ctx: typer.Context, workload: str) -> None:
    """Start a workload that stop stopped."""
    _workload_command(ctx, WorkloadAction.START, workload)


@app.command()
def restart(ctx: typer.Context, workload: str) -> None:
    """Stop and start a workload."""
    _workload_command(ctx, WorkloadAction.RESTART, workload)


@app.command()
def download(
    ctx: typer.Context,
    workload: str,
    path: Annotated[str, typer.Argument(help="the file in the workload")],
    dest: Annotated[Path | None, typer.Option("--to", help="local file")] = None,
) -> None:
    """Copy a file out of a workload."""
    s = _settings(ctx)
    target = dest or Path(Path(path).name or "download")
    size = _run(s, lambda bus: queries.download_file(bus, s, workload, path, target))
    out.print(f"downloaded {size} bytes from {workload}:{path} to {target}")


@app.command()
def upload(
    ctx: typer.Context,
    workload: str,
    file: Path,
    dest: Annotated[str | None, typer.Option("--path", help="where in the workload")] = None,
) -> None:
    """Put a file into a workload."""
    s = _settings(ctx)
    target = dest or f"/{file.name}"
    reply = _run(s, lambda bus: queries.upload_file(bus, s, workload, file, target))
    out.print(f"uploaded {reply.size} bytes to {reply.workload}:{reply.path}")


def _migrations(ctx: typer.Context, action: str, request: Request, wait: float) -> None:
    """Ask the migrator; one line per workload (exit 4 when any did not move)."""
    s = _settings(ctx)
    topic = topics.api(s.tenant, MIGRATIONS_RESOURCE, action)
    timeout = max(s.timeout, wait)  # a move waits for the workload to run on its peer
    sent = request.model_copy(update={"tenant": s.tenant})
    reply = _run(s, lambda bus: bus.request(topic, sent, MigrationReply, timeout=timeout))
    for workload, outcome in sorted(reply.outcomes.items()):
        where = reply.peers.get(workload) or reply.reasons.get(workload, "")
        out.print(f"{workload}: {outcome.value} {where}".rstrip(), highlight=False)
    if any(o is not StageOutcome.MOVED for o in reply.outcomes.values()):
        sys.exit(4)


@app.command()
def migrate(
    ctx: typer.Context,
    workload: str,
    to: Annotated[str | None, typer.Option("--to", help="this node, else the best peer")] = None,
    wait: Annotated[float, typer.Option(help="seconds to wait for the move")] = 180.0,
) -> None:
    """Move a workload to another node, with its state (see docs/migrator.md)."""
    _migrations(ctx, MigrationAction.MIGRATE, MigrateWorkload(workload=workload, to=to), wait)


@app.command()
def drain(
    ctx: typer.Context,
    node: str,
    wait: Annotated[float, typer.Option(help="seconds to wait for every move")] = 600.0,
) -> None:
    """Move the tenant's workloads off a node, one at a time, with their state."""
    _migrations(ctx, MigrationAction.DRAIN, DrainNode(node=node), wait)


_PASSTHROUGH = {
    "broker": ("fogmesh.broker", []),
    "mesh": ("fogmesh.broker", ["render-mosquitto"]),
    "agent": ("fogmesh.agent", []),
    "registry": ("fogmesh.registry", []),
    "scheduler": ("fogmesh.scheduler", []),
    "migrator": ("fogmesh.migrator", []),
}


def _passthrough(name: str) -> None:
    module, prefix = _PASSTHROUGH[name]

    @app.command(
        name=name,
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
        add_help_option=False,
        help=f"Run the {name} on its own (arguments go to `python -m {module}`).",
    )
    def _command(ctx: typer.Context) -> None:
        argv = [sys.executable, "-m", module, *prefix, *ctx.args]
        os.execv(sys.executable, argv)  # noqa: S606 -- our own interpreter and module


for _name in _PASSTHROUGH:
    _passthrough(_name)


def _register_up() -> None:
    from fogmesh.cli.fleet.command import up
    from fogmesh.cli.fleet.remote import fleet_app

    app.command(name="up")(up)
    app.add_typer(fleet_app)


_register_up()


def _register_accounts() -> None:
    from fogmesh.cli.accounts import account_app, node_app, tenant_app

    app.add_typer(tenant_app, name="tenant")
    app.add_typer(account_app, name="account")
    app.add_typer(node_app, name="node")


_register_accounts()


def _register_dashboard() -> None:
    from fogmesh.cli.dashboard import dashboard

    app.command(name="dashboard")(dashboard)


_register_dashboard()


def _register_artefacts() -> None:
    from fogmesh.cli.artefacts import artefacts_app, push

    app.command(name="push")(push)
    app.add_typer(artefacts_app, name="artefacts")


_register_artefacts()


def main() -> None:
    """Entry point: run the app, turning every expected failure into one line."""
    configure_logging(os.environ.get("FOGMESH_LOG_LEVEL", "warning"))
    try:
        app(standalone_mode=False)
    except CliError as exc:
        err.print(f"[red]error:[/] {exc.message}", highlight=False)
        sys.exit(exc.code)
    except RemoteError as exc:
        err.print(f"[red]refused ({exc.code.value}):[/] {exc.error.message}", highlight=False)
        details: dict[str, Any] = exc.error.details
        for node, reason in sorted(details.get("reasons", {}).items())[:20]:
            err.print(f"  {node}: {reason}", highlight=False)
        sys.exit(5)
    except (BusError, ContractError) as exc:
        err.print(f"[red]error:[/] {exc}", highlight=False)
        sys.exit(3)
    except (typer.Abort, KeyboardInterrupt):
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.TyperException as exc:  # usage errors: bad option, missing argument
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        else:
            err.print(f"[red]error:[/] {exc}", highlight=False)
        sys.exit(int(getattr(exc, "exit_code", 2)))
