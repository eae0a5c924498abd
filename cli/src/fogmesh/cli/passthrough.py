"""``fogmesh broker|mesh|agent|registry|scheduler|migrator ARGS``: each piece run on its own,
its arguments passed on untouched to ``python -m`` its module (the same interpreter)."""

from __future__ import annotations

import os
import sys

import typer

__all__ = ["PASSTHROUGH", "register"]

PASSTHROUGH = {
    "broker": ("fogmesh.broker", []),
    "mesh": ("fogmesh.broker", ["render-mosquitto"]),
    "agent": ("fogmesh.agent", []),
    "registry": ("fogmesh.registry", []),
    "scheduler": ("fogmesh.scheduler", []),
    "migrator": ("fogmesh.migrator", []),
}
"""Command name -> (module, arguments put before the user's)."""


def _passthrough(app: typer.Typer, name: str) -> None:
    module, prefix = PASSTHROUGH[name]

    @app.command(
        name=name,
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
        add_help_option=False,
        help=f"Run the {name} on its own (arguments go to `python -m {module}`).",
    )
    def _command(ctx: typer.Context) -> None:
        argv = [sys.executable, "-m", module, *prefix, *ctx.args]
        os.execv(sys.executable, argv)  # noqa: S606 -- our own interpreter and module


def register(app: typer.Typer) -> None:
    """Add one command per piece to ``app``."""
    for name in PASSTHROUGH:
        _passthrough(app, name)
