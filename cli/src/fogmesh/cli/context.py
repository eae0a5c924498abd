"""What every command of the ``fogmesh`` CLI shares: its settings (the global options), the
consoles it prints on, its work run on a bus, and the options and loop of the listings.

Commands print through this module's :data:`out` and :data:`err`, looked up when they print
(``context.out.print``), so one replacement of them changes every command's output."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Annotated, TypeVar

import typer
from pydantic import BaseModel
from rich.console import Console
from rich.table import Table

from fogmesh.bus import Bus
from fogmesh.cli import queries
from fogmesh.cli.render import OutputFormat, show
from fogmesh.cli.session import CliSettings, connect

__all__ = ["OutputOption", "WatchOption", "err", "listing", "out", "run", "settings"]

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

out = Console()
err = Console(stderr=True, soft_wrap=True)

OutputOption = Annotated[
    OutputFormat, typer.Option("--output", "-o", help="table, or json / yaml (the reply's models)")
]
WatchOption = Annotated[
    bool, typer.Option("--watch", "-w", help="print again at each change (Ctrl-C to stop)")
]


def settings(ctx: typer.Context) -> CliSettings:
    """The settings the global options made (``fogmesh --broker ... COMMAND``)."""
    made = ctx.obj
    assert isinstance(made, CliSettings)
    return made


def run(s: CliSettings, work: Callable[[Bus], Awaitable[T]]) -> T:
    """Connect to the broker, do ``work`` on the bus, disconnect; what ``work`` returned."""

    async def go() -> T:
        async with connect(s) as bus:
            return await work(bus)

    return asyncio.run(go())


def listing(
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

    run(s, work)
