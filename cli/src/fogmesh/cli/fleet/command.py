"""``fogmesh up``: start a fleet on this machine, deploy the sample app, watch it, stop it all.

The command checks its options, picks the runtime, writes the plan of the profile asked for
(default, ``--tls`` or ``--profile cluster``), runs it (fleet/lifecycle.py, fleet/running.py)
and removes everything it started."""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from fogmesh.cli.errors import CliError
from fogmesh.cli.fleet.cluster import ClusterFleetPlan, cluster_missing
from fogmesh.cli.fleet.lifecycle import console, run_fleet
from fogmesh.cli.fleet.plan import FleetPlan
from fogmesh.cli.fleet.running import RunningFleet
from fogmesh.cli.fleet.sample import SAMPLE_IMAGE
from fogmesh.cli.fleet.teardown import remove_leftovers
from fogmesh.cli.fleet.tls import TlsFleetPlan
from fogmesh.service import configure_logging

__all__ = ["up"]


def _docker_ready() -> tuple[bool, str]:
    if shutil.which("docker") is None:
        return False, "no docker command"
    try:
        info = subprocess.run(["docker", "info"], capture_output=True, timeout=15, check=False)
        if info.returncode != 0:
            return False, "no Docker engine answers"
        image = subprocess.run(
            ["docker", "image", "inspect", SAMPLE_IMAGE],
            capture_output=True,
            timeout=15,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False, "docker did not answer"
    if image.returncode != 0:
        return False, f"image {SAMPLE_IMAGE} is not built (deploy/images/sample-app/build.sh)"
    return True, "Docker engine answers"


def _resolve_runtime(choice: str) -> str:
    if choice == "native":
        return "native"
    ready, why = _docker_ready()
    if choice == "docker" and not ready:
        raise CliError(f"--runtime docker, but {why}", code=2)
    if not ready:
        console.print(f"[yellow]Docker not used:[/] {why}; the convolver runs natively")
    return "docker" if ready else "native"


def up(
    nodes: Annotated[int, typer.Option(min=1, max=50, help="how many node agents")] = 3,
    runtime: Annotated[str, typer.Option(help="auto, docker or native")] = "auto",
    duration: Annotated[float | None, typer.Option(help="stop by itself after SECONDS")] = None,
    state_dir: Annotated[Path | None, typer.Option(help="keep the fleet's files here")] = None,
    live: Annotated[
        bool, typer.Option(help="live tables (default on a terminal)")
    ] = sys.stdout.isatty(),
    *,
    tls: Annotated[
        bool, typer.Option("--tls", help="TLS on the links and agents, from a CA of the fleet's")
    ] = False,
    profile: Annotated[
        str,
        typer.Option(
            help="default, or cluster: a 3-member NATS cloud broker, PostgreSQL, two "
            "registries and two schedulers (needs nats-server and PostgreSQL)"
        ),
    ] = "default",
) -> None:
    """Run a whole fleet on this machine with the sample app, until Ctrl-C.

    A node agent that dies (or is killed with `fogmesh fleet kill NODE`) is a node lost: the
    live view and logs/fleet.log say so and the fleet carries on, its workloads re-placed;
    `fogmesh fleet revive NODE` starts it again. A broker, the registry, the scheduler or the
    migrator exiting ends the fleet, with the last lines of its log (they are not restarted).

    `--profile cluster` runs the cloud tier as past one machine (docs/scale.md): a NATS
    cluster of three members, PostgreSQL, two registries, two schedulers and the migrator.
    """
    if runtime not in {"auto", "docker", "native"}:
        raise CliError("--runtime must be auto, docker or native", code=2)
    if profile not in {"default", "cluster"}:
        raise CliError("--profile must be default or cluster", code=2)
    if profile == "cluster":
        if tls:
            raise CliError("--tls is not available with --profile cluster", code=2)
        missing = cluster_missing()
        if missing is not None:
            raise CliError(f"--profile cluster needs what this machine lacks: {missing}", code=2)
    configure_logging("warning")
    chosen = _resolve_runtime(runtime)
    keep = state_dir is not None
    if state_dir is not None and state_dir.exists() and any(state_dir.iterdir()):
        raise CliError(f"--state-dir {state_dir} is not empty; remove it or pick another", code=2)
    root = state_dir or Path(tempfile.mkdtemp(prefix="fogmesh-up-"))
    root = root.resolve()
    kind = ClusterFleetPlan if profile == "cluster" else TlsFleetPlan if tls else FleetPlan
    plan = kind.make(root, nodes, chosen)
    fleet = RunningFleet(plan, plan.write_files(), live)
    outputs = 0
    try:
        outputs = asyncio.run(run_fleet(fleet, duration, live))
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip the cleanup
        fleet.procs.stop_all()
        left = remove_leftovers(plan.fleet_id, root)
        if isinstance(plan, ClusterFleetPlan):
            plan.remove_database()
        console.print(
            f"stopped {len(fleet.procs.children)} processes; removed {left['containers']} "
            f"containers and {left['processes']} stray processes left by workloads"
        )
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
    console.print(f"the sample app published {outputs} outputs")
