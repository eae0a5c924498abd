"""The chaos tests' fleet: ``fogmesh up``'s plan, each process started the documented way.

The plan (ports, accounts, mesh, agent and scheduler files) is :class:`FleetPlan`'s, the one
``fogmesh up`` writes; each process is a :class:`ChildProcess` started with its documented
command (``fogmesh-broker run --mesh FILE --broker NAME``, ``fogmesh-registry``,
``fogmesh-scheduler --config``, ``fogmesh-agent --config``) and can be SIGKILLed and started again
on the same files and state directories. The sample app is deployed as ``fogmesh up`` deploys it.

With a :class:`~tests.chaos.wan.WanSplit`, the cut site's broker and agents run in its namespace
and its link reaches the cloud over the veth that can be cut (keepalive 5 s, so a cut of more
than a few seconds is noticed by both ends).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import yaml

from fogmesh.bus import Bus, BusConfig
from fogmesh.cli.fleet.live import FleetView
from fogmesh.cli.fleet.plan import APP, SITES, TENANT, FleetPlan
from fogmesh.cli.fleet.processes import ChildProcess, wait_port
from fogmesh.cli.fleet.sample import sample_manifest
from fogmesh.cli.fleet.teardown import remove_leftovers
from fogmesh.protocol import RemoteError, RequestTimeout, topics
from fogmesh.protocol.apps import AppReply, DeployApp
from fogmesh.protocol.manifest import AppManifest
from fogmesh.protocol.queries import (
    ListNodes,
    ListWorkloads,
    NodeInfo,
    NodeListReply,
    WorkloadInfo,
    WorkloadListReply,
)
from tests.chaos.wan import CUT_SITE, WanSplit

__all__ = ["BROKERS", "ChaosFleet", "running_pids", "snapshot_code"]

BIN = Path(sys.executable).parent
BROKERS = ("cloud", *SITES)
REPO = Path(__file__).resolve().parents[2]
SOURCES = (
    "protocol/src",
    "broker/src",
    "cli/src",
    *(
        f"services/{s}/src"
        for s in ("node-agent", "registry", "scheduler", "migrator", "dashboard")
    ),
    "examples/sensor-app",
)
"""Where the venv's editable installs find fogmesh's packages (and the sample app's)."""


def snapshot_code(into: Path) -> str:
    """Copy fogmesh's sources (as the editable installs see them) to ``into``; return the
    ``PYTHONPATH`` that makes a process import that copy. A long run's processes are started
    again and again: from a copy they all run the code of the run's start, whatever changes in
    the working tree meanwhile (a registry of the old models next to agents of new ones would
    test a fleet nobody deploys)."""
    paths = []
    for source in SOURCES:
        if (REPO / source).is_dir():
            target = into / source
            shutil.copytree(
                REPO / source, target, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
            )
            paths.append(str(target))
    return os.pathsep.join(paths)


@dataclass
class ChaosFleet:
    """A cloud broker, two site brokers with their links, the registry, the scheduler and the
    agents, as processes that can be killed and started again."""

    root: Path
    nodes: int = 3
    wan: WanSplit | None = None
    """The cut site's namespaces (None: the whole fleet where the test runs)."""
    pythonpath: str | None = None
    """Every process and workload imports fogmesh from here (:func:`snapshot_code`)."""
    plan: FleetPlan = field(init=False)
    paths: dict[str, Path] = field(init=False)
    children: dict[str, ChildProcess] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.plan = FleetPlan.make(self.root, self.nodes, "native")
        self.paths = self.plan.write_files()
        if self.wan is not None:
            mesh = yaml.safe_load(self.paths["mesh"].read_text())
            for link in mesh["links"]:
                if link["broker"] == CUT_SITE:
                    link["remote"]["host"] = self.wan.cloud_addr
                    link["keepalive"] = 5
            self.paths["mesh"].write_text(yaml.safe_dump(mesh, sort_keys=False))

    # -- the processes ----------------------------------------------------------------------

    @property
    def agents(self) -> list[str]:
        """The agents' process names (``agent-edge-1``...)."""
        return [f"agent-{n.node}" for n in self.plan.nodes]

    def names(self) -> list[str]:
        """Every process of the fleet, in start order."""
        return [*(f"broker-{b}" for b in BROKERS), "registry", "scheduler", *self.agents]

    def _argv(self, name: str) -> tuple[list[str], dict[str, str]]:
        plan, paths = self.plan, self.paths
        if name.startswith("broker-"):
            broker = name.removeprefix("broker-")
            mesh = ["--mesh", str(paths["mesh"]), "--broker", broker]
            return [str(BIN / "fogmesh-broker"), "run", *mesh], {}
        if name == "registry":
            account = plan.accounts["registry"]
            argv = [str(BIN / "fogmesh-registry"), "--host", "127.0.0.1"]
            argv += ["--port", str(plan.ports["cloud"]), "--client-id", "registry"]
            argv += ["--default-interval", "2", "--missed", "3"]
            argv += ["--db", f"sqlite:///{plan.state_dir / 'registry.db'}"]
            return argv, {
                "FOGMESH_USERNAME": account.username,
                "FOGMESH_PASSWORD": account.password,
            }
        if name == "scheduler":
            return [str(BIN / "fogmesh-scheduler"), "--config", str(paths["scheduler"])], {}
        node = name.removeprefix("agent-")
        return [str(BIN / "fogmesh-agent"), "--config", str(paths[f"agent-{node}"])], {}

    def behind_wan(self, name: str) -> bool:
        """Whether process ``name`` runs in the cut site's namespace."""
        if self.wan is None:
            return False
        if name == f"broker-{CUT_SITE}":
            return True
        return any(f"agent-{n.node}" == name and n.site == CUT_SITE for n in self.plan.nodes)

    def start(self, name: str) -> None:
        """Start (or start again) one process; a broker is waited for until it listens."""
        argv, env = self._argv(name)
        log = self.root / "logs" / f"{name}.log"
        offset = log.stat().st_size if log.exists() else 0
        inside = self.wan is not None and self.behind_wan(name)
        child = ChildProcess(name, self.wan.wrap(argv) if self.wan and inside else argv, log)
        if self.pythonpath:
            env = {**env, "PYTHONPATH": self.pythonpath}
        child.start({"FOGMESH_FLEET": self.plan.fleet_id, **env})
        self.children[name] = child
        if not name.startswith("broker-"):
            return
        if inside:  # the test cannot connect into the namespace: the broker says it listens
            self._wait_ready(child, log, offset)
            return
        port = self.plan.ports[name.removeprefix("broker-")]
        if not wait_port(port, timeout=120, proc=child.proc):
            raise AssertionError(f"{name} did not start:\n{self.tail(name)}")

    def _wait_ready(self, child: ChildProcess, log: Path, offset: int) -> None:
        broker = child.name.removeprefix("broker-")
        deadline = time.monotonic() + 120
        while True:
            with log.open("rb") as text:
                text.seek(offset)
                if f"ready {broker}".encode() in text.read():
                    return
            if not child.alive or time.monotonic() > deadline:
                raise AssertionError(f"{child.name} did not start:\n{self.tail(child.name)}")
            time.sleep(0.05)

    def start_all(self) -> None:
        """Every process, brokers first (and the WAN relay before them)."""
        if self.wan is not None and self.wan.relay is None:
            self.wan.start_relay(self.plan.ports["cloud"], self.root / "logs" / "wan-relay.log")
        for name in self.names():
            self.start(name)

    def kill(self, name: str) -> None:
        """SIGKILL one process (not its workloads: they run under their own shims)."""
        child = self.children[name]
        if child.proc is not None and child.proc.poll() is None:
            child.proc.send_signal(signal.SIGKILL)
            child.proc.wait(timeout=30)

    def kill_everything(self) -> int:
        """SIGKILL every process of the fleet at once, workloads and shims included, as a machine
        losing power would; returns how many workload-side processes were killed."""
        for child in self.children.values():
            if child.proc is not None and child.proc.poll() is None:
                child.proc.send_signal(signal.SIGKILL)
        killed = remove_leftovers(self.plan.fleet_id, self.root)["processes"]
        for child in self.children.values():
            if child.proc is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.proc.wait(timeout=30)
        return killed

    def dead(self) -> list[str]:
        """Processes that exited by themselves."""
        return [n for n, c in self.children.items() if not c.alive]

    def stop(self) -> None:
        """Stop everything and leave nothing behind."""
        for child in reversed(list(self.children.values())):
            child.signal_group(signal.SIGTERM)
        deadline = time.monotonic() + 20
        for child in self.children.values():
            if child.proc is None:
                continue
            try:
                child.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.signal_group(signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.proc.wait(timeout=10)
        remove_leftovers(self.plan.fleet_id, self.root)

    def tail(self, name: str, chars: int = 2500) -> str:
        """The end of one process's log."""
        with contextlib.suppress(OSError):
            return (self.root / "logs" / f"{name}.log").read_text(errors="replace")[-chars:]
        return "(no log)"

    def logs(self) -> str:
        """The end of every process's log, for a failure message."""
        return "\n".join(f"--- {n}\n{self.tail(n, 600)}" for n in self.children)

    # -- the bus side -----------------------------------------------------------------------

    def bus_config(self, client_id: str, *, persistent: bool = False) -> BusConfig:
        """A service-account client of the cloud broker (the operator's account)."""
        operator = self.plan.accounts["operator"]
        return BusConfig(
            port=self.plan.ports["cloud"],
            client_id=client_id,
            username=operator.username,
            password=operator.password,
            clean_session=not persistent,
            timeout=30,
            reconnect_base=0.2,
            reconnect_cap=2.0,
        )

    async def deploy_sample(self, bus: Bus) -> AppReply:
        """The sample app as ``fogmesh up`` deploys it (native sensor and convolver)."""
        manifest = sample_manifest(TENANT, APP, "native")
        for component in manifest.components:  # the convolver logs each reading it handles
            if component.name == "convolve":
                component.env["FM_LOG_LEVEL"] = "debug"
            if self.pythonpath:  # workloads get only their own environment, not the agent's
                component.env["PYTHONPATH"] = self.pythonpath
        if self.wan is not None:
            # The sensor stays off the cut site; the convolver is free to go anywhere, so it is
            # moved between the sites whenever its node is lost, and what its old site's broker
            # queued for its session must follow it there (fogmesh.broker.handoff).
            data = manifest.model_dump(mode="json")
            for component in data["components"]:
                if component["name"] != "convolve":
                    component["placement"] = {"labels": f"site != {CUT_SITE}"}
            manifest = AppManifest.model_validate(data)
        last: Exception | None = None
        for _ in range(60):  # the scheduler may still be taking its lease or learning the nodes
            try:
                return await bus.request(
                    topics.api(TENANT, "apps", "deploy"),
                    DeployApp(manifest=manifest),
                    AppReply,
                    timeout=20,
                )
            except (RemoteError, RequestTimeout) as exc:
                last = exc
                await asyncio.sleep(2.0)
        raise AssertionError(f"the sample app could not be deployed: {last}\n{self.logs()}")

    async def registry_nodes(self, bus: Bus) -> list[NodeInfo]:
        """Every node as the registry sees it."""
        reply = await bus.request(
            topics.api(TENANT, "nodes", "list"), ListNodes(limit=500), NodeListReply, timeout=20
        )
        return reply.nodes

    async def registry_workloads(self, bus: Bus) -> list[WorkloadInfo]:
        """The tenant's workloads as the registry sees them."""
        reply = await bus.request(
            topics.api(TENANT, "workloads", "list"),
            ListWorkloads(app=APP, limit=500),
            WorkloadListReply,
            timeout=20,
        )
        return reply.workloads


def running_pids(view: FleetView) -> dict[tuple[str, str], int]:
    """(node, workload) -> pid of what the agents report running, if that process lives."""
    found: dict[tuple[str, str], int] = {}
    for node, status in view.workloads():
        if status.phase.value == "running" and status.runtime_id.isdigit():
            pid = int(status.runtime_id)
            if psutil.pid_exists(pid):
                found[(node, status.name)] = pid
    return found
