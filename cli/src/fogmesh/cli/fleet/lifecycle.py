"""``fogmesh up`` once its files are written: start the fleet, wait for its nodes, deploy the
sample app, watch it until stopped, remove the app."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time

from rich.console import Console
from rich.live import Live

from fogmesh.bus import Bus
from fogmesh.cli.errors import CliError
from fogmesh.cli.fleet.control import ControlServer
from fogmesh.cli.fleet.keys import KEYS_HELP, LiveKeys
from fogmesh.cli.fleet.live import FleetView
from fogmesh.cli.fleet.plan import APP, SITES, TENANT, FleetPlan
from fogmesh.cli.fleet.running import RunningFleet
from fogmesh.cli.fleet.sample import sample_manifest
from fogmesh.protocol import RemoteError, RequestTimeout, WorkloadPhase, topics
from fogmesh.protocol.apps import (
    APPS_RESOURCE,
    AppAction,
    AppDeletedReply,
    AppReply,
    DeleteApp,
    DeployApp,
)

__all__ = ["console", "run_fleet"]

console = Console(stderr=True)


async def _wait_for(
    what: str, check: object, fleet: RunningFleet, timeout: float, stop: asyncio.Event
) -> None:
    assert callable(check)
    deadline = time.monotonic() + timeout
    with console.status(what):
        while not check():
            fleet.check_alive()
            if stop.is_set():
                raise CliError(f"interrupted while {what}", code=130)
            if time.monotonic() > deadline:
                raise CliError(f"timed out: {what}")
            await asyncio.sleep(0.2)


async def _deploy(bus: Bus, runtime: str, stop: asyncio.Event) -> AppReply:
    manifest = sample_manifest(TENANT, APP, runtime)
    last: Exception | None = None
    for _ in range(20):  # the scheduler may still be taking its lease or learning the nodes
        if stop.is_set():
            raise CliError("interrupted while deploying the sample app", code=130)
        try:
            return await bus.request(
                topics.api(TENANT, APPS_RESOURCE, AppAction.DEPLOY),
                DeployApp(manifest=manifest),
                AppReply,
                timeout=10,
            )
        except (RemoteError, RequestTimeout) as exc:
            last = exc
            await asyncio.sleep(1.0)
    raise CliError(f"the sample app could not be deployed: {last}")


async def _remove_app(bus: Bus, view: FleetView) -> None:
    with contextlib.suppress(RemoteError, RequestTimeout):
        await bus.request(
            topics.api(TENANT, APPS_RESOURCE, AppAction.DELETE),
            DeleteApp(app=APP),
            AppDeletedReply,
            timeout=10,
        )
        deadline = time.monotonic() + 30
        while view.workloads() and time.monotonic() < deadline:  # noqa: ASYNC110 -- polls a view
            await asyncio.sleep(0.3)


def _status_line(view: FleetView, plan: FleetPlan) -> str:
    running = sum(1 for _, w in view.workloads() if w.phase is WorkloadPhase.RUNNING)
    out = view.streams.get("out")
    rate = out.rate() if out else 0.0
    return (
        f"nodes online {len(view.online())}/{len(plan.nodes)}, workloads running "
        f"{running}/{len(view.workloads())}, outputs on out: {view.outputs()} ({rate:.1f}/s)"
    )


async def _watch(view: FleetView, fleet: RunningFleet, stop: asyncio.Event, live: bool) -> None:
    if live:
        keys = LiveKeys(fleet.control, view.note)
        with (
            Live(view.render(), console=Console(), refresh_per_second=2, screen=False) as screen,
            keys.attached(sys.stdin.fileno()) as reading,
        ):
            view.hint = KEYS_HELP if reading else ""
            while not stop.is_set():
                screen.update(view.render())
                fleet.check_alive()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.5)
        return
    while not stop.is_set():
        print(_status_line(view, fleet.plan), flush=True)  # noqa: T201 -- plain progress for logs
        fleet.check_alive()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 5.0)


async def run_fleet(fleet: RunningFleet, duration: float | None, live: bool) -> int:
    """Start ``fleet`` and keep it until Ctrl-C, SIGTERM or ``duration`` seconds after the
    deployment; returns how many outputs the sample app published."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    plan = fleet.plan
    view = fleet.view
    what = "three brokers (cloud, site-a, site-b) and their links"
    if fleet.cluster is not None:
        what = "a NATS cluster of three, PostgreSQL, the site brokers and their links"
    with console.status(f"starting {what}"):
        await asyncio.to_thread(fleet.start_brokers)
    fleet.start_services()
    control = ControlServer(plan.state_dir, fleet.control)
    if not await control.start():
        console.print(f"[yellow]no control socket:[/] {control.path} is too long a path")
    try:
        return await _deploy_and_watch(fleet, view, stop, duration, live)
    finally:
        await control.close()


async def _deploy_and_watch(
    fleet: RunningFleet, view: FleetView, stop: asyncio.Event, duration: float | None, live: bool
) -> int:
    plan = fleet.plan
    loop = asyncio.get_running_loop()
    async with Bus(fleet.viewer_config()) as bus:
        view.attach(bus)
        try:
            await bus.wait_connected(timeout=15)
        except TimeoutError as exc:
            raise CliError("could not connect to the fleet's cloud broker") from exc
        names = {n.node for n in plan.nodes}
        await _wait_for(
            f"waiting for {len(names)} nodes to come online",
            lambda: names <= view.online(),
            fleet,
            90,
            stop,
        )
        console.print(f"[green]fleet up:[/] {len(names)} nodes online over {len(SITES)} sites")
        with console.status(f"deploying {APP} ({plan.runtime} convolver)"):
            reply = await _deploy(bus, plan.runtime, stop)
        placed = ", ".join(f"{p.workload} on {p.node}" for p in reply.app.placements)
        console.print(f"[green]deployed {APP}:[/] {placed}")
        console.print(f"credentials for the CLI and mosquitto_pub: source {fleet.paths['env']}")
        if fleet.dashboard_url:
            console.print(
                f"dashboard: {fleet.dashboard_url} (log in as {TENANT} with "
                "FOGMESH_TENANT_PASSWORD from that file)"
            )
        console.print(
            "watch a failover: `fogmesh fleet kill NODE` (--silent: SIGSTOP), then "
            "`fogmesh fleet revive NODE`"
        )
        if duration is not None:  # counted from the deployment, so start-up time is not taken
            loop.call_later(duration, stop.set)
        try:
            await _watch(view, fleet, stop, live)
        finally:
            console.print(f"stopping: {_status_line(view, plan)}")
            with console.status("removing the sample app"):
                await _remove_app(bus, view)
    return view.outputs()
