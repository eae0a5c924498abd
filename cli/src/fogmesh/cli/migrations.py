"""Moves with state, asked of the migrator: ``fogmesh migrate WORKLOAD [--to NODE]`` and
``fogmesh drain NODE`` (docs/migrator.md)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from fogmesh.cli import context
from fogmesh.protocol import Request, topics
from fogmesh.protocol.migration import (
    MIGRATIONS_RESOURCE,
    DrainNode,
    MigrateWorkload,
    MigrationAction,
    MigrationReply,
    StageOutcome,
)

__all__ = ["drain", "migrate", "register"]


def _migrations(ctx: typer.Context, action: str, request: Request, wait: float) -> None:
    """Ask the migrator; one line per workload (exit 4 when any did not move)."""
    s = context.settings(ctx)
    topic = topics.api(s.tenant, MIGRATIONS_RESOURCE, action)
    timeout = max(s.timeout, wait)  # a move waits for the workload to run on its peer
    sent = request.model_copy(update={"tenant": s.tenant})
    reply = context.run(s, lambda bus: bus.request(topic, sent, MigrationReply, timeout=timeout))
    for workload, outcome in sorted(reply.outcomes.items()):
        where = reply.peers.get(workload) or reply.reasons.get(workload, "")
        context.out.print(f"{workload}: {outcome.value} {where}".rstrip(), highlight=False)
    if any(o is not StageOutcome.MOVED for o in reply.outcomes.values()):
        sys.exit(4)


def migrate(
    ctx: typer.Context,
    workload: str,
    to: Annotated[str | None, typer.Option("--to", help="this node, else the best peer")] = None,
    wait: Annotated[float, typer.Option(help="seconds to wait for the move")] = 180.0,
) -> None:
    """Move a workload to another node, with its state (see docs/migrator.md)."""
    _migrations(ctx, MigrationAction.MIGRATE, MigrateWorkload(workload=workload, to=to), wait)


def drain(
    ctx: typer.Context,
    node: str,
    wait: Annotated[float, typer.Option(help="seconds to wait for every move")] = 600.0,
) -> None:
    """Move the tenant's workloads off a node, one at a time, with their state."""
    _migrations(ctx, MigrationAction.DRAIN, DrainNode(node=node), wait)


def register(app: typer.Typer) -> None:
    """Add the migration commands to ``app``."""
    for command in (migrate, drain):
        app.command()(command)
