"""One workload, by name: ``fogmesh logs``, ``stop``, ``start``, ``restart``, ``download``
and ``upload`` (the agent that runs it answers)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fogmesh.cli import context, queries
from fogmesh.protocol.commands import MAX_FOLLOW_S
from fogmesh.protocol.workload_api import WorkloadAction

__all__ = ["download", "logs", "register", "restart", "start", "stop", "upload"]


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
    s = context.settings(ctx)

    def show(lines: list[str]) -> None:
        for line in lines:
            context.out.print(line, markup=False, highlight=False)

    if not follow:
        show(context.run(s, lambda bus: queries.fetch_logs(bus, s, workload, tail)))
        return
    seconds = min(max(follow_for, 1.0), MAX_FOLLOW_S)
    context.run(s, lambda bus: queries.follow_logs(
        bus, s, workload, tail=tail, seconds=seconds, on_lines=show
    ))  # fmt: skip


def _workload_command(ctx: typer.Context, action: WorkloadAction, workload: str) -> None:
    s = context.settings(ctx)
    done = context.run(s, lambda bus: queries.workload_command(bus, s, action, workload))
    context.out.print(done)


def stop(ctx: typer.Context, workload: str) -> None:
    """Stop a workload; it stays stopped until start (or restart)."""
    _workload_command(ctx, WorkloadAction.STOP, workload)


def start(ctx: typer.Context, workload: str) -> None:
    """Start a workload that stop stopped."""
    _workload_command(ctx, WorkloadAction.START, workload)


def restart(ctx: typer.Context, workload: str) -> None:
    """Stop and start a workload."""
    _workload_command(ctx, WorkloadAction.RESTART, workload)


def download(
    ctx: typer.Context,
    workload: str,
    path: Annotated[str, typer.Argument(help="the file in the workload")],
    dest: Annotated[Path | None, typer.Option("--to", help="local file")] = None,
) -> None:
    """Copy a file out of a workload."""
    s = context.settings(ctx)
    target = dest or Path(Path(path).name or "download")
    size = context.run(s, lambda bus: queries.download_file(bus, s, workload, path, target))
    context.out.print(f"downloaded {size} bytes from {workload}:{path} to {target}")


def upload(
    ctx: typer.Context,
    workload: str,
    file: Path,
    dest: Annotated[str | None, typer.Option("--path", help="where in the workload")] = None,
) -> None:
    """Put a file into a workload."""
    s = context.settings(ctx)
    target = dest or f"/{file.name}"
    reply = context.run(s, lambda bus: queries.upload_file(bus, s, workload, file, target))
    context.out.print(f"uploaded {reply.size} bytes to {reply.workload}:{reply.path}")


def register(app: typer.Typer) -> None:
    """Add the workload commands to ``app``."""
    for command in (logs, stop, start, restart, download, upload):
        app.command()(command)
