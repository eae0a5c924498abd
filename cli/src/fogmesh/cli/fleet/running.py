"""The fleet ``fogmesh up`` runs: its processes started by profile, what it shows, its control.

A node agent that dies is a node lost, shown in the live view, never the end of the fleet;
``fogmesh fleet kill/revive`` (fleet/remote.py) reach the running fleet over its control
socket (fleet/control.py) to fail a node and bring it back (fleet/supervise.py)."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import shutil
import sys
import time
from pathlib import Path

from fogmesh.bus import BusConfig
from fogmesh.cli.errors import CliError
from fogmesh.cli.fleet.cluster import ClusterFleetPlan, start_cloud_tier
from fogmesh.cli.fleet.control import ControlAction, ControlRequest
from fogmesh.cli.fleet.live import FleetView
from fogmesh.cli.fleet.plan import APP, SITES, TENANT, FleetPlan, free_port
from fogmesh.cli.fleet.processes import ProcessSet, wait_port
from fogmesh.cli.fleet.supervise import NodeSupervisor, log_tail
from fogmesh.service import BrokerSettings

__all__ = ["RunningFleet"]

AGENT_ENVIRONMENT = {"MALLOC_ARENA_MAX": "1"}
"""What the shipped unit (deploy/systemd/fogmesh-agent.service) sets for the agent: one malloc
arena for its threads (docs/agent.md, "Memory")."""


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


class RunningFleet:
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
                env=AGENT_ENVIRONMENT,
            )

    def viewer_config(self) -> BusConfig:
        viewer = self.plan.accounts["viewer"]
        return BrokerSettings(
            port=self.plan.ports["cloud"],
            client_id=f"viewer-{int(time.time())}",
            username=viewer.username,
            password=viewer.password,
        ).bus_config(clean_session=True)
