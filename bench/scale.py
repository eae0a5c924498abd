"""Past one machine: the figures of issue 14 that this machine can measure, in one file.

* ``scheduler_failover_s``: two ``fogmesh-scheduler`` processes on one Mosquitto, each with a
  state dir of its own (the apps reach the standby only as retained records on the bus); the
  leader holds ``--apps`` apps over simulated nodes and is SIGKILLed; the time from the kill
  until the standby answers ``list`` with every app. ``--rounds`` kills (the killed one comes
  back as the standby). Bounded below by the lease (``--lease-ttl``, the scheduler's default
  10 s: a standby claims only an expired lease).
* ``placements_per_s``: ``bench/scheduler.py`` (10,000 nodes, warm / cold / unconstrained),
  run here as it is and read from its result.
* ``broker_member_kill_lost``: ``tests/broker/test_nats_cluster.py``'s member-kill test (three
  NATS members on loopback, 300 QoS 1 messages published across the kill of the member the
  publisher is on, retained desired state read back): 0 when it passes, which it asserts.
* ``heartbeat_lag``: through the clustered broker (three NATS members,
  ``tests/support/nats_cluster.py``) into PostgreSQL (``--db``, default
  ``$FOGMESH_TEST_PG_URL``) with one and with two registry replicas (``--share-by registry``),
  for each fleet of ``--lag-nodes`` (default 10,000 and 20,000) at a 10 s heartbeat:
  ``bench/registry.py``'s run (its simulator: hello, state, heartbeats, actual state answering
  desired; its lag from a heartbeat's publish to its row, the same heartbeats' publish to a
  plain subscriber as the baseline, live nodes ever not online, and with two replicas the
  failover after one is SIGKILLed). ``nodes``: the largest fleet measured. Goal: 20,000 nodes
  with p99 < 1 s and no live node ever stale or offline.

Run: ``.venv/bin/python bench/scale.py [--apps N --rounds K --lease-ttl S] [--skip-scheduler]
[--skip-placements] [--skip-cluster] [--skip-lag] [--lag-nodes 10000,20000] [--db URL]``
(writes ``bench/results/scale.json``; figures of a part skipped are kept from the file).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import REPO, RESULTS, load_average, write_result
from registry import holds, run_fleet, table

from fogmesh.bus import Bus, BusConfig
from fogmesh.protocol import topics
from fogmesh.protocol.apps import AppListReply, AppReply, DeployApp, ListApps
from fogmesh.protocol.manifest import AppManifest
from fogmesh.protocol.node import (
    Heartbeat,
    NodeFacts,
    NodeHello,
    NodeLiveness,
    NodeStateMessage,
    Usage,
)
from tests.support.brokers import free_port, wait_port

BIN = Path(sys.executable).parent
TENANT = "bench"
NODES = 8


# -- the scheduler failover ------------------------------------------------------------------


class Schedulers:
    """Mosquitto and two scheduler processes, ``a`` and ``b``, with state dirs of their own."""

    def __init__(self, root: Path, lease_ttl: float) -> None:
        self.root = root
        self.port = free_port()
        self.lease_ttl = lease_ttl
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        conf = root / "mosquitto.conf"
        conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\n")
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.broker = subprocess.Popen([exe, "-c", str(conf)], stderr=subprocess.DEVNULL)
        wait_port(self.port)

    def start(self, name: str) -> None:
        config = self.root / f"sched-{name}.yaml"
        config.write_text(
            f"client_id: sched-{name}\nbroker: {{host: 127.0.0.1, port: {self.port},"
            f" username: sched-{name}}}\nstate_dir: {self.root / name}\n"
            f"lease_ttl_s: {self.lease_ttl}\nheartbeat_interval_s: 1\n"
        )
        log = (self.root / f"sched-{name}.log").open("ab")
        self.procs[name] = subprocess.Popen(
            [str(BIN / "fogmesh-scheduler"), "--config", str(config), "--log-level", "warning"],
            stdout=log, stderr=log,
        )  # fmt: skip

    def kill(self, name: str) -> None:
        proc = self.procs.pop(name)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=15)

    def stop(self) -> None:
        for proc in [*self.procs.values(), self.broker]:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


async def _nodes(bus: Bus) -> None:
    """``NODES`` simulated nodes: hello and online (retained), a heartbeat a second."""
    for i in range(NODES):
        node = f"node-{i}"
        facts = NodeFacts(
            device_id=node, arch="x86_64", cpu_count=64, memory_bytes=256 * 2**30,
            disk_bytes=2**40, runtimes=["docker", "native"], labels={},
        )  # fmt: skip
        await bus.publish(
            topics.node(node, "hello"), NodeHello(node=node, facts=facts), retain=True
        )
        state = NodeStateMessage(node=node, state=NodeLiveness.ONLINE)
        await bus.publish(topics.node(node, "state"), state, retain=True)
    usage = Usage(
        cpu_percent=5, memory_used_bytes=2**30, memory_total_bytes=256 * 2**30,
        disk_used_bytes=0, disk_total_bytes=2**40,
    )  # fmt: skip
    seq = 0
    while True:
        for i in range(NODES):
            hb = Heartbeat(node=f"node-{i}", seq=seq, interval_s=1.0, usage=usage)
            await bus.publish(topics.node(f"node-{i}", "heartbeat"), hb, qos=0)
        seq += 1
        await asyncio.sleep(1.0)


def _manifest(n: int) -> AppManifest:
    return AppManifest.model_validate({
        "name": f"app-{n}",
        "components": [{"name": "c", "image": "fogmesh/sample-app:latest",
                        "requests": {"cpu": "10m", "memory": "8Mi"}}],
    })  # fmt: skip


async def _listed(bus: Bus) -> int | None:
    """How many apps the leading scheduler lists now (None: no answer)."""
    try:
        reply = await bus.request(
            topics.api(TENANT, "apps", "list"), ListApps(), AppListReply, timeout=1.0
        )
    except TimeoutError:
        return None
    return len(reply.apps)


async def failover(apps: int, rounds: int, lease_ttl: float) -> dict[str, Any]:
    """Deploy ``apps`` apps, then kill the leader ``rounds`` times; seconds per takeover."""
    times: list[float] = []
    with tempfile.TemporaryDirectory(prefix="fm-bench-scale-") as tmp:
        fleet = Schedulers(Path(tmp), lease_ttl)
        config = BusConfig(port=fleet.port, client_id="bench", username="bench")
        try:
            async with Bus(config) as bus:
                beating = asyncio.create_task(_nodes(bus))
                fleet.start("a")
                deadline = time.monotonic() + 120
                deployed = 0
                while deployed < apps:
                    try:
                        await bus.request(
                            topics.api(TENANT, "apps", "deploy"),
                            DeployApp(manifest=_manifest(deployed)), AppReply, timeout=2.0,
                        )  # fmt: skip
                        deployed += 1
                    except TimeoutError:
                        if time.monotonic() > deadline:
                            raise
                fleet.start("b")
                leader, standby = "a", "b"
                await asyncio.sleep(3.0)  # the standby has subscribed and taken the records
                for _ in range(rounds):
                    killed = time.monotonic()
                    fleet.kill(leader)
                    while await _listed(bus) != apps:
                        if time.monotonic() - killed > 120:
                            raise TimeoutError("the standby never listed every app")
                    times.append(round(time.monotonic() - killed, 2))
                    print(f"  standby {standby} serves {apps} apps {times[-1]} s after the kill")
                    fleet.start(leader)  # back as the standby
                    await asyncio.sleep(3.0)
                    leader, standby = standby, leader
                beating.cancel()
        finally:
            fleet.stop()
    return {
        "scheduler_failover_s": max(times),
        "failover_runs_s": times,
        "apps": apps,
        "lease_ttl_s": lease_ttl,
        "broker": "mosquitto",
    }


# -- the figures taken from other benches and tests ------------------------------------------


def placements() -> dict[str, Any]:
    """Run bench/scheduler.py and read its figures."""
    subprocess.run([sys.executable, str(REPO / "bench" / "scheduler.py")], check=True, timeout=1800)
    data = json.loads((RESULTS / "scheduler.json").read_text())
    return {"placements_per_s": data["placements_per_s"], "placements_nodes": data["nodes"]}


def member_kill() -> dict[str, Any]:
    """Run the NATS cluster's member-kill test: it asserts that nothing acknowledged is lost."""
    test = (
        "tests/broker/test_nats_cluster.py"
        "::test_member_kill_loses_no_acknowledged_message_nor_retained_state"
    )
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test],
        cwd=REPO, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    passed = done.returncode == 0
    return {
        "broker_member_kill_lost": 0 if passed else None,
        "broker_member_kill": {"test": test, "passed": passed, "messages": 300, "members": 3},
    }


# -- the heartbeat lag through the cluster -------------------------------------------------

LAG_INTERVAL_S = 10.0
LAG_MEASURE_S = 30.0


async def heartbeat_lag(fleets: list[int], db_url: str) -> dict[str, Any]:
    """One and two registries over the NATS cluster into PostgreSQL, per fleet size."""
    runs: dict[str, list[dict[str, Any]]] = {"one_registry": [], "two_registries": []}
    for nodes in fleets:
        for key, replicas in (("one_registry", 1), ("two_registries", 2)):
            print(f"lag: {nodes} nodes, {replicas} registry(s), NATS cluster ...", flush=True)
            run = await run_fleet(
                nodes, LAG_INTERVAL_S, LAG_MEASURE_S, db_url, replicas=replicas, broker="nats"
            )
            print(table(run), flush=True)
            runs[key].append(run)
    held = [r["nodes"] for rs in runs.values() for r in rs if holds(r)]
    return {
        "nodes": max(fleets),
        "heartbeat_lag": {
            **runs,
            "goal": "20,000 nodes every 10 s, p99 < 1 s, no live node ever stale or offline",
            "largest_fleet_held": max(held) if held else None,
        },
    }


def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--apps", type=int, default=200)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--lease-ttl", type=float, default=10.0)
    p.add_argument("--skip-placements", action="store_true")
    p.add_argument("--skip-cluster", action="store_true")
    p.add_argument("--skip-scheduler", action="store_true")
    p.add_argument("--skip-lag", action="store_true")
    p.add_argument("--lag-nodes", default="10000,20000", help="fleet sizes, comma-separated")
    p.add_argument("--db", default=os.environ.get("FOGMESH_TEST_PG_URL"), help="PostgreSQL URL")
    args = p.parse_args()
    load_before = load_average()
    previous = RESULTS / "scale.json"
    result: dict[str, Any] = {}
    if previous.exists():  # the figures of the parts skipped this time stay
        result = {
            k: v
            for k, v in json.loads(previous.read_text()).items()
            if k not in ("benchmark", "when", "machine", "load_average")
        }
    if not args.skip_lag:
        if not args.db:
            p.error("the heartbeat lag needs PostgreSQL: --db URL or $FOGMESH_TEST_PG_URL")
        fleets = [int(n) for n in args.lag_nodes.split(",")]
        result.update(asyncio.run(heartbeat_lag(fleets, args.db)))
    if not args.skip_scheduler:
        print(f"scheduler failover: {args.apps} apps, lease ttl {args.lease_ttl} s ...")
        result.update(asyncio.run(failover(args.apps, args.rounds, args.lease_ttl)))
    if not args.skip_placements:
        print("placements: bench/scheduler.py ...", flush=True)
        result.update(placements())
    if not args.skip_cluster:
        print("NATS member kill: tests/broker/test_nats_cluster.py ...", flush=True)
        result.update(member_kill())
    result["load_average"] = {"before": load_before, "after": load_average()}
    path = write_result("scale", result)
    print(json.dumps(result, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
