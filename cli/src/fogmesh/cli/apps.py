"""A tenant's apps: ``fogmesh deploy MANIFEST``, ``delete APP`` and ``scale APP COMPONENT N``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from fogmesh.cli import context, queries
from fogmesh.cli.errors import CliError
from fogmesh.cli.render import app_table
from fogmesh.protocol import error_info_from_validation
from fogmesh.protocol.manifest import load_manifest_text

__all__ = ["delete", "deploy", "register", "scale"]


def deploy(
    ctx: typer.Context, file: Annotated[Path, typer.Argument(help="manifest (YAML or JSON)")]
) -> None:
    """Deploy an app from its manifest."""
    s = context.settings(ctx)
    try:
        manifest = load_manifest_text(file.read_text(), tenant=None)
    except OSError as exc:
        raise CliError(f"cannot read {file}: {exc.strerror}", code=2) from exc
    except ValidationError as exc:
        raise CliError(f"{file}: {error_info_from_validation(exc).message}", code=2) from exc
    reply = context.run(s, lambda bus: queries.deploy_app(bus, s, manifest))
    context.out.print(app_table(reply.app))


def delete(ctx: typer.Context, app_name: Annotated[str, typer.Argument(metavar="APP")]) -> None:
    """Delete an app and remove its workloads."""
    s = context.settings(ctx)
    reply = context.run(s, lambda bus: queries.delete_app(bus, s, app_name))
    context.out.print(f"deleted {reply.app}: {len(reply.removed)} workloads removed")


def scale(
    ctx: typer.Context,
    app_name: Annotated[str, typer.Argument(metavar="APP")],
    component: str,
    replicas: int,
) -> None:
    """Set how many replicas of a component run."""
    s = context.settings(ctx)
    reply = context.run(s, lambda bus: queries.scale_app(bus, s, app_name, component, replicas))
    context.out.print(app_table(reply.app))


def register(app: typer.Typer) -> None:
    """Add the app commands to ``app``."""
    for command in (deploy, delete, scale):
        app.command()(command)
