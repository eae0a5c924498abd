"""The fleet the partition tests cut: ``fogmesh up``'s plan with only the cloud and site-a, the
cloud's processes in one network namespace of an :class:`~tests.support.netns.NsPair` and the
site's in the other, each started with its documented command."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from fogmesh.cli.fleet.plan import TENANT, FleetPlan
from fogmesh.cli.fleet.processes import ChildProcess
from fogmesh.cli.fleet.teardown import remove_leftovers
from tests.support.brokers import REPO
from tests.support.netns import NsPair

__all__ = ["APP", "BIN", "SITE_NODES", "CutFleet", "site_migrator"]

BIN = Path(sys.executable).parent
SITE_NODES = ("edge-1", "edge-3")  # the plan puts edge-1 and edge-3 at site-a
APP = "keep"


class CutFleet:
    """``fogmesh up``'s plan with only the cloud and site-a, split across the namespaces."""

    def __init__(self, root: Path, pair: NsPair) -> None:
        self.root, self.pair = root, pair
        self.plan = FleetPlan.make(root, 3, "native")
        self.paths = self.plan.write_files()
        mesh = self.plan.mesh()
        del mesh["brokers"]["site-b"]
        cloud = mesh["brokers"]["cloud"]
        cloud["listeners"].append(
            {"name": "wan", "host": pair.cloud_addr, "port": self.plan.ports["cloud"]}
        )
        mesh["links"] = [link for link in mesh["links"] if link["broker"] == "site-a"]
        mesh["links"][0]["remote"]["listener"] = "wan"
        mesh["links"][0]["keepalive"] = 5  # the cloud notices a silent cut in 7.5 s
        self.paths["mesh"].write_text(yaml.safe_dump(mesh, sort_keys=False))
        self.children: dict[str, ChildProcess] = {}

    def start(self, name: str, ns: str, argv: list[str], env: dict[str, str]) -> ChildProcess:
        child = ChildProcess(name, self.pair.exec(ns, *argv), self.root / "logs" / f"{name}.log")
        child.start({"FOGMESH_FLEET": self.plan.fleet_id, **env})
        self.children[name] = child
        return child

    def start_all(self) -> None:
        pair, plan, paths = self.pair, self.plan, self.paths
        for broker, ns in (("cloud", pair.cloud), ("site-a", pair.site)):
            argv = [str(BIN / "fogmesh-broker"), "run", "--mesh", str(paths["mesh"])]
            child = self.start(f"broker-{broker}", ns, [*argv, "--broker", broker], {})
            deadline = time.monotonic() + 120
            while f"ready {broker}" not in self.tail(child.name):
                assert child.alive, self.tail(child.name)
                assert time.monotonic() < deadline, f"{broker} did not start"
                time.sleep(0.1)
        account = plan.accounts["registry"]
        registry = [str(BIN / "fogmesh-registry"), "--host", "127.0.0.1"]
        registry += ["--port", str(plan.ports["cloud"]), "--client-id", "registry"]
        registry += ["--default-interval", "2", "--missed", "3"]
        registry += ["--db", f"sqlite:///{plan.state_dir / 'registry.db'}"]
        env = {"FOGMESH_USERNAME": account.username, "FOGMESH_PASSWORD": account.password}
        self.start("registry", pair.cloud, registry, env)
        scheduler = [str(BIN / "fogmesh-scheduler"), "--config", str(paths["scheduler"])]
        self.start("scheduler", pair.cloud, scheduler, {})
        for node in SITE_NODES:
            agent = [str(BIN / "fogmesh-agent"), "--config", str(paths[f"agent-{node}"])]
            self.start(f"agent-{node}", pair.site, agent, {})

    def deploy(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """``manifest`` deployed through the probe (its reply, ``{"error": ...}`` if it
        failed)."""
        path = self.root / "manifest.json"
        path.write_text(json.dumps(manifest))
        return self.probe("deploy", "--manifest", str(path))

    def probe(self, *args: str) -> dict[str, Any]:
        """One probe command run in the cloud's namespace (``{"error": ...}`` if it failed)."""
        operator = self.plan.accounts["operator"]
        argv = [sys.executable, "-m", "tests.partition.probe", *args]
        argv += ["--port", str(self.plan.ports["cloud"]), "--user", operator.username]
        argv += ["--tenant", TENANT, "--app", APP]
        try:
            done = subprocess.run(
                self.pair.exec(self.pair.cloud, *argv),
                check=False,
                cwd=REPO,
                env={**os.environ, "PROBE_PASSWORD": operator.password},
                capture_output=True,
                text=True,
                timeout=90,
            )
        except subprocess.TimeoutExpired:
            return {"error": "probe timed out"}
        lines = done.stdout.strip().splitlines()
        return json.loads(lines[-1]) if lines else {"error": done.stderr[-2000:]}

    def tail(self, name: str, chars: int = 3000) -> str:
        path = self.root / "logs" / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else "(no log)"

    def logs(self) -> str:
        return "\n".join(f"--- {n}\n{self.tail(n, 800)}" for n in self.children)

    def stop(self) -> None:
        for child in reversed(list(self.children.values())):
            child.signal_group(signal.SIGTERM)
        for child in self.children.values():
            if child.proc is None:
                continue
            try:
                child.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                child.signal_group(signal.SIGKILL)
                child.proc.wait(timeout=10)
        remove_leftovers(self.plan.fleet_id, self.root)


def site_migrator(fleet: CutFleet) -> None:
    """site-a's own migrator, in site mode, on the site broker, as ``fogmesh up`` starts it
    (docs/migrator.md, "During a partition")."""
    argv = [str(BIN / "fogmesh-migrator"), "--config", str(fleet.paths["migrator-site-a"])]
    fleet.start("migrator-site-a", fleet.pair.site, argv, {})
