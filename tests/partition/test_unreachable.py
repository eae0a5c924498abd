"""A cut WAN is not a death: a site cut off silently is unreachable, and nothing is evicted.

In two network namespaces joined by a veth pair (``tests.support.netns``): the cloud broker,
the registry and the scheduler in ``fmt-{tag}-cloud``; the site broker ``site-a`` with its link
(keepalive 5 s) and two real agents in ``fmt-{tag}-site``, everything from ``fogmesh up``'s plan
and started with its documented command. A native app runs on the site's nodes: two replicas
one per node, and one pinned to ``edge-1``. The veth is cut silently (netem loss, or nftables
drops) for longer than the liveness timeout (3 heartbeats of 2 s), then healed:

- while cut the registry shows both site nodes ``unreachable`` (never ``offline``), the
  scheduler keeps every placement where it was (nothing re-placed, nothing removed), and the
  site's workload processes keep running (the same pids);
- after the heal both nodes are ``online`` again, with the same placements and the same pids.

The test reads the cloud through ``tests.partition.probe`` run inside the cloud's namespace.
Skipped without root or ``ip netns``, except with ``CI=true``, where it fails instead.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

from fogmesh.cli.fleet.plan import TENANT, FleetPlan
from fogmesh.cli.fleet.processes import ChildProcess
from fogmesh.cli.fleet.teardown import remove_leftovers
from tests.support.brokers import REPO
from tests.support.buses import eventually
from tests.support.netns import NsPair

pytestmark = pytest.mark.netns

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


def manifest(token: str) -> dict[str, Any]:
    """Two replicas, one per site node, and one pinned to edge-1; ``token`` marks their
    processes so the test can find them."""
    code = f"import time; time.sleep(3600)  # {token}"
    common = {
        "runtime": "native",
        "executable": sys.executable,
        "command": ["-c", code],
        "requests": {"cpu": "50m", "memory": "32Mi"},
    }
    return {
        "name": APP,
        "tenant": TENANT,
        "components": [
            {"name": "spread", **common, "replicas": 2, "anti_affinity": ["spread"]},
            {"name": "pinned", **common, "placement": {"node": "edge-1"}},
        ],
    }


def pids(token: str) -> set[int]:
    """The running processes the app's workloads are (found by ``token``)."""
    found = set()
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if any(token in part for part in cmdline) and "-c" in cmdline:
            found.add(proc.info["pid"])
    return found


async def test_a_cut_site_is_unreachable_and_nothing_is_evicted(
    tmp_path: Path, pair: NsPair
) -> None:
    fleet = CutFleet(tmp_path / "fleet", pair)
    token = f"fm-partition-{secrets.token_hex(4)}"
    looks: list[dict[str, Any]] = []

    def look() -> dict[str, Any]:
        seen = fleet.probe("look")
        looks.append(seen)
        return seen

    def nodes_are(state: str) -> bool:
        seen = look()
        return all(seen.get("nodes", {}).get(n) == state for n in SITE_NODES)

    try:
        fleet.start_all()
        await eventually(lambda: nodes_are("online"), 120, "both site nodes online")
        path = tmp_path / "manifest.json"
        path.write_text(json.dumps(manifest(token)))
        deployed = fleet.probe("deploy", "--manifest", str(path))
        assert "error" not in deployed, f"{deployed}\n{fleet.logs()}"
        placed = deployed["placements"]
        assert sorted(placed.values()) == ["edge-1", "edge-1", "edge-3"], placed
        await eventually(lambda: len(pids(token)) == 3, 120, "the three workloads running")
        before = pids(token)

        method = pair.cut()
        print("cut:", method)
        cut_at = time.monotonic()
        await eventually(lambda: nodes_are("unreachable"), 90, "the site nodes unreachable")
        print(f"unreachable after ~{time.monotonic() - cut_at:.1f}s")
        # stay cut well past the liveness timeout (3 x 2 s) and the scheduler's
        while time.monotonic() - cut_at < 25:
            seen = look()
            states = [seen.get("nodes", {}).get(n) for n in SITE_NODES]
            assert "offline" not in states, f"{seen}\n{fleet.logs()}"
            if "placements" in seen:
                assert seen["placements"] == placed, f"re-placed during the cut: {seen}"
        assert pids(token) == before, "a site workload stopped during the cut"

        pair.heal()
        healed_at = time.monotonic()
        await eventually(lambda: nodes_are("online"), 120, "the site nodes online after the heal")
        print(f"online again ~{time.monotonic() - healed_at:.1f}s after the heal")
        settle = time.monotonic()
        while time.monotonic() - settle < 10:  # heartbeats queued through the cut cross now
            seen = look()
            assert seen.get("placements", placed) == placed, f"evicted after the heal: {seen}"
            states = [seen.get("nodes", {}).get(n) for n in SITE_NODES]
            assert "offline" not in states, f"{seen}\n{fleet.logs()}"
        assert pids(token) == before, "a site workload was restarted after the heal"
        states = [s for seen in looks for s in seen.get("nodes", {}).values()]
        assert "offline" not in states
    finally:
        fleet.stop()
