"""``fogmesh fleet kill`` / ``revive``: fail a node of a running ``fogmesh up`` and bring it
back, to watch a failover happen (see docs/tutorial.md, "Watch a failover")."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from fogmesh.cli.errors import CliError
from fogmesh.cli.fleet.control import ControlAction, ControlRequest, send_control

__all__ = ["FLEET_DIR_ENV", "fleet_app"]

FLEET_DIR_ENV = "FOGMESH_FLEET_DIR"
"""Set by ``source {state dir}/fleet.env``: which fleet the commands act on."""

fleet_app = typer.Typer(
    name="fleet",
    help="Act on the fleet a `fogmesh up` runs on this machine (kill and revive a node).",
    no_args_is_help=True,
)
out = Console()

StateDir = Annotated[
    Path | None,
    typer.Option(help=f"the fleet's --state-dir (env {FLEET_DIR_ENV}, set by its fleet.env)"),
]


def _state_dir(given: Path | None) -> Path:
    where = given or (Path(os.environ[FLEET_DIR_ENV]) if os.environ.get(FLEET_DIR_ENV) else None)
    if where is None:
        raise CliError(
            f"which fleet? give --state-dir, or `source` its fleet.env (sets {FLEET_DIR_ENV})",
            code=2,
        )
    return where.resolve()


@fleet_app.command()
def kill(
    node: str,
    silent: Annotated[
        bool,
        typer.Option(
            "--silent", help="SIGSTOP the agent (heartbeats stop) instead of SIGKILL of it all"
        ),
    ] = False,
    state_dir: StateDir = None,
) -> None:
    """Kill a node: SIGKILL of its agent and its workloads (its last will fires), or with
    --silent SIGSTOP of its agent (its heartbeats stop, until `fogmesh fleet revive`)."""
    request = ControlRequest(action=ControlAction.KILL, node=node, silent=silent)
    out.print(send_control(_state_dir(state_dir), request), highlight=False)


@fleet_app.command()
def revive(node: str, state_dir: StateDir = None) -> None:
    """Bring a killed node back: its agent starts again with the same configuration and
    state directory (a --silent kill: SIGCONT)."""
    request = ControlRequest(action=ControlAction.REVIVE, node=node)
    out.print(send_control(_state_dir(state_dir), request), highlight=False)
