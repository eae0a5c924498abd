"""A cut WAN, measured: readings through a partition, a 1,000-node reconnect storm, the drain.

Two network namespaces (``tests.support.netns``; only their own addresses are touched): the
cloud (broker, registry, a persistent readings subscriber) and the site (broker with its link,
keepalive 5 s, ``drain: {rate: --drain-rate, backlog: 1000}``; ``--nodes`` simulated nodes
heartbeating every ``--interval`` s, ``bench/registry_sim.py``'s; a reading publisher at
10/s). Once the registry holds every node online, the veth is cut silently (netem loss or
nftables drops) for ``--partition-s`` (default 300), then healed, and the run waits until the
registry has every node online again and every reading arrived. Written to
``bench/results/partition.json``:

- ``readings_sent_at_site``, ``readings_lost`` (sent, acknowledged by the site broker, never
  seen at the cloud), ``readings_out_of_order``;
- ``storm_nodes`` (the nodes whose queued traffic and live heartbeats cross at the heal) and
  ``healthy_nodes_marked_lost`` (``node-lost`` events of those nodes: none ever stopped);
- ``drain_msgs_per_s`` (the link's backlog: messages sent / seconds, from its own log),
  with ``drain_backlog``, ``drain_coalesced``, ``drain_s``;
- ``storm_nodes``: at the heal every simulated node reconnects at once (its connection closed
  and opened again, hello, state and a heartbeat each), while the link's backlog crosses;
- ``workloads_evicted``, ``site_local_migration_s`` and more from the part with real agents, a
  node dying during the partition (``bench/partition_agents.py``).

``python bench/partition.py [--partition-s 300] [--nodes 1000] [--cases storm,agents]``
(one case alone merges its figures into the result file); needs root and ``ip netns``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import re
import secrets
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiomqtt
import yaml
from _common import REPO, RESULTS, load_average, write_result
from partition_agents import site_autonomy
from registry_sim import heartbeat_json, hello_json

from fogmesh.broker.passwords import hash_password
from tests.support.netns import NsPair, netns_unavailable, ns_pair

BIN = Path(sys.executable).parent
CLOUD_PORT, WAN_PORT, SITE_PORT = 21883, 21884, 21885
READINGS = "fm/v1/data/bench/readings/out"
PASSWORD = os.environ.setdefault("FM_PARTITION_BENCH_PW", secrets.token_hex(8))  # children inherit
CONNS = 10


# -- the child processes' roles (run inside a namespace) ---------------------------------------


def _stopped(stop_file: Path) -> bool:
    """Whether the run asked its children to stop (a file: they live in other namespaces)."""
    return stop_file.exists()


def _wait_stopped(stop_file: Path) -> None:
    while not _stopped(stop_file):
        time.sleep(0.2)


def _write(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data))


async def _site(port: int, nodes: int, interval: float, stop_file: Path, out: Path) -> None:
    """Simulated nodes (hello + online retained, then heartbeats) and a reading every 0.1 s."""
    names = [f"sim-{i:05d}" for i in range(nodes)]
    stats = {"readings_sent": 0, "heartbeats": 0}

    def client(ident: str) -> aiomqtt.Client:
        return aiomqtt.Client(
            "127.0.0.1", port, identifier=ident, username="svc", password=PASSWORD, timeout=30
        )

    reconnect = stop_file.with_name("reconnect")

    async def conn(i: int, part: list[str]) -> None:
        # twice: once at the start, once more at the heal (the storm: every node at once)
        await joined(i, part, until_reconnect=True)
        await joined(i, part, until_reconnect=False)

    async def joined(i: int, part: list[str], *, until_reconnect: bool) -> None:
        c = client(f"bench-sim-{i}" if until_reconnect else f"bench-sim-{i}-again")
        await c.__aenter__()
        try:
            await heartbeats(c, part, until_reconnect=until_reconnect)
        finally:
            # aiomqtt's exit waits for its DISCONNECT with no deadline: bounded here, so a
            # node that reconnects is not stuck leaving behind a busy broker
            with contextlib.suppress(TimeoutError, aiomqtt.MqttError):
                async with asyncio.timeout(5):
                    await c.__aexit__(None, None, None)

    async def heartbeats(c: aiomqtt.Client, part: list[str], *, until_reconnect: bool) -> None:
        c.pending_calls_threshold = 1000
        for n in part:
            hello = json.loads(hello_json(n))
            hello["facts"]["site"] = "site"  # the broker it is joined to: the registry's site
            await c.publish(f"fm/v1/nodes/{n}/hello", json.dumps(hello), qos=1, retain=True)
            state = json.dumps({"node": n, "state": "online", "boot_id": "b1"})
            await c.publish(f"fm/v1/nodes/{n}/state", state, qos=1, retain=True)
            # its first heartbeat at once, as an agent's: the connection's other nodes may
            # take longer than the liveness timeout to join on a loaded machine
            await c.publish(f"fm/v1/nodes/{n}/heartbeat", heartbeat_json(n, 0, interval))
        seq = 1
        while not _stopped(stop_file):
            if until_reconnect and reconnect.exists():
                return
            began = time.monotonic()
            for n in part:
                await c.publish(f"fm/v1/nodes/{n}/heartbeat", heartbeat_json(n, seq, interval))
                stats["heartbeats"] += 1
            seq += 1
            while time.monotonic() - began < interval and not _stopped(stop_file):
                if until_reconnect and reconnect.exists():
                    break  # reconnect at once, with every other node
                await asyncio.sleep(0.2)

    async def readings() -> None:
        async with client("bench-readings") as c:
            while not _stopped(stop_file):
                n = stats["readings_sent"]
                await c.publish(READINGS, f"r-{n}".encode(), qos=1)  # returns once acked
                stats["readings_sent"] = n + 1
                await asyncio.sleep(0.1)
        _write(stop_file.with_name("readings-sent.json"), stats["readings_sent"])

    parts = [names[i::CONNS] for i in range(CONNS)]
    await asyncio.gather(readings(), *(conn(i, p) for i, p in enumerate(parts) if p))
    _write(out, stats)


async def _watch(port: int, stop_file: Path, out: Path) -> None:
    """The cloud's persistent readings subscriber: every reading's number, in arrival order,
    until every reading the site sent arrived (it says how many once stopped), or 120 s after
    the stop."""
    seen: list[int] = []
    async with aiomqtt.Client(
        "127.0.0.1", port, identifier="bench-watch", username="svc", password=PASSWORD,
        clean_session=False, timeout=30,
    ) as c:  # fmt: skip
        await c.subscribe(READINGS, qos=1)

        async def read() -> None:
            async for msg in c.messages:
                if isinstance(msg.payload, bytes) and msg.payload.startswith(b"r-"):
                    seen.append(int(msg.payload[2:]))

        reader = asyncio.create_task(read())
        await asyncio.to_thread(_wait_stopped, stop_file)
        sent_file = stop_file.with_name("readings-sent.json")
        for _ in range(1200):
            sent = await asyncio.to_thread(_read_json, sent_file, None)
            if sent is not None and len(set(seen)) >= sent:
                break
            await asyncio.sleep(0.1)
        reader.cancel()
    _write(out, seen)


# -- the run, from the root namespace ----------------------------------------------------------


def _mesh(root: Path, pair: NsPair, drain_rate: float) -> Path:
    digest = hash_password(PASSWORD)
    users = [
        {"username": "svc", "role": "service", "password_hash": digest},
        {"username": "bridge", "role": "bridge", "password_hash": digest},
    ]
    cloud_listeners = [
        {"name": "default", "host": "127.0.0.1", "port": CLOUD_PORT},
        {"name": "wan", "host": pair.cloud_addr, "port": WAN_PORT},
    ]
    mesh = {
        "brokers": {
            "cloud": {
                "listeners": cloud_listeners,
                "data_dir": str(root / "cloud"),
                "users": users,
            },
            "site": {
                "listeners": [{"name": "default", "host": "127.0.0.1", "port": SITE_PORT}],
                "data_dir": str(root / "site"),
                "users": users,
            },
        },
        "links": [
            {
                "name": "wan",
                "broker": "site",
                "local": {"username": "bridge", "password": PASSWORD},
                "remote": {"broker": "cloud", "listener": "wan", "username": "bridge",
                           "password": PASSWORD},
                "rules": [
                    {"pattern": "fm/v1/nodes/#", "direction": "out", "qos": 1},
                    {"pattern": "fm/v1/data/#", "direction": "out", "qos": 1},
                ],
                "keepalive": 5,
                "backoff_base": 0.5,
                "backoff_cap": 5,
                "drain": {"rate": drain_rate, "backlog": 1000},
            }
        ],
    }  # fmt: skip
    path = root / "mesh.yaml"
    path.write_text(yaml.safe_dump(mesh, sort_keys=False))
    return path


class Run:
    """The processes of one run, each inside its namespace, with logs under ``root``."""

    def __init__(self, root: Path, pair: NsPair) -> None:
        self.root, self.pair = root, pair
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.stop_file = root / "stop"

    def start(self, name: str, ns: str, *argv: str) -> None:
        with (self.root / f"{name}.log").open("ab") as log:
            self.procs[name] = subprocess.Popen(
                self.pair.exec(ns, *argv), cwd=REPO, stdout=log, stderr=subprocess.STDOUT
            )

    def log(self, name: str) -> str:
        return (self.root / f"{name}.log").read_text(errors="replace")

    def broker(self, name: str, ns: str, mesh: Path) -> None:
        # INFO: the link logs its drain (sent, coalesced, seconds), which the figures read
        self.start(name, ns, str(BIN / "fogmesh-broker"), "--log-level", "INFO", "run",
                   "--mesh", str(mesh), "--broker", name)  # fmt: skip
        deadline = time.monotonic() + 120
        while f"ready {name}" not in self.log(name):
            if time.monotonic() > deadline or self.procs[name].poll() is not None:
                raise RuntimeError(f"{name} did not start:\n{self.log(name)[-2000:]}")
            time.sleep(0.2)

    def stop(self) -> None:
        self.stop_file.touch()
        for name in ("sims", "watch"):  # they write their figures and leave on their own
            with contextlib.suppress(KeyError, subprocess.TimeoutExpired):
                self.procs[name].wait(timeout=150)
        for proc in reversed(list(self.procs.values())):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def _db(root: Path, since: float = 0.0) -> dict[str, Any]:
    """The registry's view: node states, and the nodes it judged lost from ``since`` (unix)."""
    with contextlib.closing(sqlite3.connect(root / "registry.db", timeout=30)) as db:
        try:
            states = dict(db.execute("SELECT node, state FROM nodes").fetchall())
            rows = db.execute(
                "SELECT node FROM events WHERE kind = 'node-lost' AND ts >= ?", (since,)
            )
            lost = {r[0] for r in rows}
        except sqlite3.OperationalError:  # not created yet
            return {"states": {}, "lost": set()}
    return {"states": states, "lost": lost}


def _count(states: dict[str, str], state: str) -> int:
    return sum(1 for s in states.values() if s == state)


def _read_json(path: Path, default: Any) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return default


def bench(opts: argparse.Namespace) -> dict[str, Any]:
    reason = netns_unavailable()
    if reason is not None:
        raise SystemExit(f"bench/partition.py: {reason}")
    root = Path(tempfile.mkdtemp(prefix="fm-partition-bench-"))
    me = [sys.executable, str(Path(__file__).resolve())]
    with ns_pair() as pair:
        run = Run(root, pair)
        cut_wall, warm_lost, method = time.time(), 0, "(no cut)"
        try:
            mesh = _mesh(root, pair, opts.drain_rate)
            run.broker("cloud", pair.cloud, mesh)
            run.broker("site", pair.site, mesh)
            run.start(
                "registry", pair.cloud, str(BIN / "fogmesh-registry"),
                "--broker-host", "127.0.0.1", "--broker-port", str(CLOUD_PORT),
                "--broker-username", "svc", "--broker-password", PASSWORD,
                "--client-id", "registry", "--default-interval", str(opts.interval),
                "--missed", "3", "--db", f"sqlite:///{root / 'registry.db'}",
            )  # fmt: skip
            run.start("watch", pair.cloud, *me, "watch", "--root", str(root))
            run.start("sims", pair.site, *me, "site", "--root", str(root),
                      "--nodes", str(opts.nodes), "--interval", str(opts.interval))  # fmt: skip
            deadline = time.monotonic() + 300
            while _count(_db(root)["states"], "online") < opts.nodes:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"nodes never online: {len(_db(root)['states'])}")
                time.sleep(1.0)
            print(f"{opts.nodes} nodes online; cutting for {opts.partition_s:g}s", flush=True)

            warm_lost = len(_db(root)["lost"])
            method = pair.cut()
            cut_at, cut_wall = time.monotonic(), time.time()
            unreachable_max = 0
            while time.monotonic() - cut_at < opts.partition_s:
                time.sleep(2.0)
                unreachable_max = max(unreachable_max, _count(_db(root)["states"], "unreachable"))
            pair.heal()
            (root / "reconnect").touch()  # every simulated node reconnects at once
            healed = time.monotonic()
            print("healed; waiting for the nodes and the readings", flush=True)
            deadline = healed + max(180.0, opts.partition_s)
            online_after_s = None
            while time.monotonic() < deadline:
                states = _db(root)["states"]
                if online_after_s is None and _count(states, "online") == opts.nodes:
                    online_after_s = round(time.monotonic() - healed, 1)
                drained = "backlog to remote crossed" in run.log("site")
                if online_after_s is not None and drained:
                    break
                time.sleep(1.0)
            time.sleep(5.0)  # the last readings published before the stop
        finally:
            run.stop()
        view = _db(root, cut_wall)
        site = _read_json(root / "site.json", {})
        seen: list[int] = _read_json(root / "watch.json", [])
        sent = int(site.get("readings_sent", 0))
        distinct = set(seen)
        firsts = list(dict.fromkeys(seen))
        drain = re.findall(
            r"draining (\d+) to remote.*\n(?:.*\n)*?.*backlog to remote crossed: (\d+) sent,"
            r" (\d+) coalesced in ([\d.]+)s",
            run.log("site"),
        )
        backlog, d_sent, coalesced, drain_s = (
            (int(drain[-1][0]), int(drain[-1][1]), int(drain[-1][2]), float(drain[-1][3]))
            if drain
            else (None, None, None, None)
        )
        return {
            "partition_s": opts.partition_s,
            "partition_s_note": "the issue's figure is a 5-minute partition (300 s)"
            if opts.partition_s != 300
            else "the issue's 5-minute partition",
            "cut": method,
            "readings_sent_at_site": sent,
            "readings_received_at_cloud": len(distinct),
            "readings_lost": len(set(range(sent)) - distinct),
            "readings_out_of_order": sum(1 for a, b in itertools.pairwise(firsts) if b < a),
            "readings_duplicates": len(seen) - len(distinct),
            "storm_nodes": opts.nodes,
            "storm_note": "at the heal every simulated node reconnects to its site broker at"
            " once (hello, state, heartbeat each) while the link carries the queued backlog",
            "unreachable_max": unreachable_max,
            "healthy_nodes_marked_lost": len(view["lost"]),
            "healthy_nodes_marked_lost_note": "node-lost events from the cut on; before it,"
            f" while {opts.nodes} nodes joined on a loaded machine: {warm_lost}",
            "online_after_heal_s": online_after_s,
            "nodes_online_at_end": _count(view["states"], "online"),
            "drain_rate_configured": opts.drain_rate,
            "drain_backlog": backlog,
            "drain_sent": d_sent,
            "drain_coalesced": coalesced,
            "drain_s": drain_s,
            "drain_msgs_per_s": round(d_sent / drain_s, 1) if d_sent and drain_s else None,
            "drain_msgs_per_s_note": "backlog messages sent per second of the drain; the"
            " coalesced ones (deleted unsent) are not counted; the configured rate is a ceiling",
            "load_average_end": load_average(),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd")
    site = sub.add_parser("site")
    site.add_argument("--root", type=Path, required=True)
    site.add_argument("--nodes", type=int, required=True)
    site.add_argument("--interval", type=float, required=True)
    watch = sub.add_parser("watch")
    watch.add_argument("--root", type=Path, required=True)
    parser.add_argument("--partition-s", type=float, default=300.0)
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--interval", type=float, default=20.0, help="heartbeat seconds")
    parser.add_argument("--drain-rate", type=float, default=500.0, help="link drain.rate")
    parser.add_argument("--cases", default="storm,agents", help="storm, agents or both")
    opts = parser.parse_args()
    if opts.cmd == "site":
        stop, out = opts.root / "stop", opts.root / "site.json"
        asyncio.run(_site(SITE_PORT, opts.nodes, opts.interval, stop, out))
        return
    if opts.cmd == "watch":
        asyncio.run(_watch(CLOUD_PORT, opts.root / "stop", opts.root / "watch.json"))
        return
    cases = set(opts.cases.split(","))
    # one case alone is merged into the figures of the last run of the other
    old = _read_json(RESULTS / "partition.json", {})
    stale = {"benchmark", "when", "machine", "workloads_evicted_reason",
             "site_local_migration_s_reason"}  # fmt: skip
    result: dict[str, Any] = {k: v for k, v in old.items() if k not in stale}
    if "storm" in cases:
        result.update(bench(opts))
    if "agents" in cases:
        result.update(site_autonomy())
        result["load_average_end"] = load_average()
    path = write_result("partition", result)
    for key, value in result.items():
        print(f"  {key:32} {value}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
