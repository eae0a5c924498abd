"""``fogmesh up``: start a fleet on this machine, deploy the sample app, watch it, stop it all.

A node agent that dies is a node lost, shown in the live view, never the end of the fleet;
``fogmesh fleet kill/revive`` (fleet/remote.py) reach the running fleet over its control
socket (fleet/control.py) to fail a node and bring it back (fleet/supervise.py)."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.live import Live

from fogmesh.bus import Bus, BusConfig
from fogmesh.cli.errors import CliError
from fogmesh.cli.fleet.cluster import ClusterFleetPlan, cluster_missing, start_cloud_tier
from fogmesh.cli.fleet.control import ControlAction, ControlRequest, ControlServer
from fogmesh.cli.fleet.keys import KEYS_HELP, LiveKeys
from fogmesh.cli.fleet.live import FleetView
from fogmesh.cli.fleet.plan import APP, SITES, TENANT, FleetPlan, free_port
from fogmesh.cli.fleet.processes import ProcessSet, wait_port
from fogmesh.cli.fleet.sample import SAMPLE_IMAGE, sample_manifest
from fogmesh.cli.fleet.supervise import NodeSupervisor, log_tail
from fogmesh.cli.fleet.teardown import remove_leftovers
from fogmesh.cli.fleet.tls import TlsFleetPlan
from fogmesh.protocol import RemoteError, RequestTimeout, WorkloadPhase, topics
from fogmesh.protocol.apps import (
    APPS_RESOURCE,
    AppAction,
    AppDeletedReply,
    AppReply,
    DeleteApp,
    DeployApp,
)
from fogmesh.service import BrokerSettings, configure_logging

__all__ = ["up"]

console = Console(stderr=True)


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


def _migrator_command() -> list[str] | None:
    """The migrator's console script, beside this interpreter or on the PATH (None: the
    fogmesh-migrator distribution is not installed, and the fleet runs without it)."""
    beside = Path(sys.executable).parent / "fogmesh-migrator"
    found = str(beside) if beside.exists() else shutil.which("fogmesh-migrator")
    return [found] if found else None


def _dashboard_ready() -> bool:
    """The dashboard distribution and its vendored browser libraries are installed."""
    try:
        from fogmesh.dashboard import missing_assets
    except ImportError:
        return False
    return not missing_assets()


class _Fleet:
    """The running fleet: its plan, its processes, what it shows, and a bus to watch it."""

    def __init__(self, plan: FleetPlan, paths: dict[str, Path], live: bool) -> None:
        self.plan = plan
        self.paths = paths
        self.live = live
        self.procs = ProcessSet(
            plan.state_dir / "logs", marker_env={"FOGMESH_FLEET": plan.fleet_id}
        )
        self.events_log = plan.state_dir / "logs" / "fleet.log"
        self.view = FleetView(TENANT, APP, on_note=self._echo)
        self.supervisor = NodeSupervisor(
            self.procs, plan.fleet_id, plan.state_dir, note=self.view.note
        )
        self.view.agents = self.supervisor.agents
        self.dashboard_url: str | None = None

    def _echo(self, text: str) -> None:
        """Keep a line of what happened in logs/fleet.log; print it when there is no live view."""
        stamp = time.strftime("%H:%M:%S")
        with contextlib.suppress(OSError):
            self.events_log.parent.mkdir(parents=True, exist_ok=True)
            with self.events_log.open("a") as log:
                log.write(f"{stamp} {text}\n")
        if not self.live:
            print(f"event: {text}", flush=True)  # noqa: T201 -- plain progress for logs

    def check_alive(self) -> None:
        """Report dead agents; raise when a broker or service died (the fleet ends)."""
        self.supervisor.check()

    async def control(self, request: ControlRequest) -> str:
        """Do what ``fogmesh fleet kill/revive`` asked (off the event loop: it signals,
        scans processes and asks docker)."""
        if request.action is ControlAction.KILL:
            return await asyncio.to_thread(
                self.supervisor.kill, request.node, silent=request.silent
            )
        return await asyncio.to_thread(self.supervisor.revive, request.node)

    @property
    def cluster(self) -> ClusterFleetPlan | None:
        """The plan, when the fleet runs the cluster profile."""
        return self.plan if isinstance(self.plan, ClusterFleetPlan) else None

    def start_brokers(self) -> None:
        brokers: tuple[str, ...] = ("cloud", *SITES)
        if self.cluster is not None:  # the cloud is NATS, beside the registries' PostgreSQL
            start_cloud_tier(self.procs, self.cluster, self.paths)
            brokers = SITES
        for name in brokers:
            child = self.procs.python(
                f"broker-{name}",
                "fogmesh.broker",
                "run",
                "--mesh",
                str(self.paths["mesh"]),
                "--broker",
                name,
            )
            if not wait_port(self.plan.ports[name], proc=child.proc):
                raise CliError(f"broker {name} did not start:\n{log_tail(child.log)}")

    def start_services(self) -> None:
        plan = self.plan
        for registry in plan.registries():
            self.procs.python(registry.name, registry.module, *registry.args, env=registry.env)
        for scheduler in plan.schedulers():
            self.procs.python(
                scheduler, "fogmesh.scheduler", "--config", str(self.paths[scheduler])
            )
        migrator = _migrator_command()
        if migrator is not None:
            self.procs.run("migrator", [*migrator, "--config", str(self.paths["migrator"])])
            for site in SITES:  # each site's own, for deaths while its WAN is down
                name = f"migrator-{site}"
                self.procs.run(name, [*migrator, "--config", str(self.paths[name])])
        # fogmesh-artefacts, when installed; not on the cluster profile (docs/scale.md)
        if self.cluster is None and importlib.util.find_spec("fogmesh.artefacts") is not None:
            self.procs.python("artefacts", "fogmesh.artefacts", "store",
                              "--config", str(self.paths["artefacts"]))  # fmt: skip
            for site in SITES:  # each site's cache, on its broker (docs/artefacts.md)
                name = f"artefact-cache-{site}"
                self.procs.python(name, "fogmesh.artefacts", "cache",
                                  "--config", str(self.paths[name]))  # fmt: skip
        if _dashboard_ready():  # the page, beside the services, on the cloud's plain listener
            port = free_port()
            self.procs.python(
                "dashboard",
                "fogmesh.dashboard",
                *("--broker", f"127.0.0.1:{plan.ports['cloud']}"),
                *("--listen", f"127.0.0.1:{port}", "--log-level", "warning"),
            )
            self.dashboard_url = f"http://127.0.0.1:{port}/"
        for node in plan.nodes:
            self.procs.python(
                f"agent-{node.node}",
                "fogmesh.agent",
                "--config",
                str(self.paths[f"agent-{node.node}"]),
                node=node.node,
            )

    def viewer_config(self) -> BusConfig:
        viewer = self.plan.accounts["viewer"]
        return BrokerSettings(
            port=self.plan.ports["cloud"],
            client_id=f"viewer-{int(time.time())}",
            username=viewer.username,
            password=viewer.password,
        ).bus_config(clean_session=True)


async def _wait_for(
    what: str, check: object, fleet: _Fleet, timeout: float, stop: asyncio.Event
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


async def _watch(view: FleetView, fleet: _Fleet, stop: asyncio.Event, live: bool) -> None:
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


async def _run(fleet: _Fleet, duration: float | None, live: bool) -> int:
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
        return await _run_fleet(fleet, view, stop, duration, live)
    finally:
        await control.close()


async def _run_fleet(
    fleet: _Fleet, view: FleetView, stop: asyncio.Event, duration: float | None, live: bool
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
    fleet = _Fleet(plan, plan.write_files(), live)
    outputs = 0
    try:
        outputs = asyncio.run(_run(fleet, duration, live))
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
