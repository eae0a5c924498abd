"""What an idle site sends over its WAN link: bytes on the link's socket, both ways, per node-month.

Each configuration is a site of its own: a cloud and a site broker (``fogmesh-broker run``, the
embedded broker) joined by a bridge link with the rules ``fogmesh up`` gives a site's WAN link
(``fogmesh.cli.fleet.plan.link_rules``), and the site's node agents. The figure is the link's
own count of the bytes on its remote sockets, both ways (``LinkStatus.wire_bytes_out`` /
``wire_bytes_in``, MQTT packets whole). The link's remote side also dials the cloud through a
TCP relay in this process (``tests/support/relay.py``) that counts the same bytes (the
cross-check, and the figure when the link has no counters) and parses the MQTT packets so each
byte is charged to the ``fm/v1`` tree its PUBLISH names (``mqtt`` for pings, acks, connects).

The agents are the real :class:`fogmesh.agent.service.Agent`, several per process (one process
per configuration), with the native runtime; their workloads are tiny ``sleep`` processes placed
by a retained desired state published on the cloud, as the scheduler does. Only their node usage
is steady (an idle edge box: CPU 1-3 %, memory and disk moving by a few MB), since this 2-core
machine's own usage is the other processes' load, not the node's; each workload's usage is
sampled for real. With ``--sample-app`` configurations the first node of the site also runs the
paper's sample app (sensor at 1 Hz and convolver, native), whose own data crosses the link, and
reports a busy box's usage (CPU 20-80 %, memory 1.0-1.4 of 2 GB: nearly every sample is news);
they run the agents' defaults, the same with usage news at every sampling tick (the design
before the usage wait, ``usage-at-once``: the baseline) and the previous design. What crosses
besides the app's data is split by the relay.

With ``--cloud`` the cloud tier runs as ``fogmesh up`` runs it (:class:`CloudRun`: the fleet
plan's brokers, accounts, service configs and link rules; registry, scheduler, migrators,
artefact store and caches), idle nodes on both sites, once with today's link rules and once
with the previous design's (every tree but requests and replies both ways: the baseline).
``--merge`` writes the run's figures into ``bench/results/wan.json`` beside what it holds.

Configurations: site size 1 or 10 nodes, 0 or 20 idle workloads per node, each once with the
agent's defaults (heartbeats on news, ``heartbeat_on_change: true``) and once as the previous
design (``heartbeat_on_change: false``: every 5 s with every workload's status, the baseline),
all at once; a site's agents start spread over ``--stagger`` (300 s: nodes not switched on
together). Once every workload runs, the link's queue is empty and a settling pause is over, the
counters are read, and again after ``--duration`` seconds; the difference is extrapolated to a
30-day month per node.

    .venv/bin/python bench/wan.py --sample-app  # 1200 s per configuration, all in parallel
    .venv/bin/python bench/wan.py --cloud --sample-app --only cloud app --duration 600 --merge
    .venv/bin/python bench/wan.py --quick       # 90 s, agents started within 30 s, for trying
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, RESULTS, load_average, write_result

from fogmesh.broker.passwords import hash_password
from fogmesh.cli.fleet.plan import link_rules
from tests.support.brokers import free_port, wait_port
from tests.support.relay import CountingRelay

HERE = Path(__file__).resolve().parent
MONTH_S = 30 * 24 * 3600
PASSWORD = "bench-pw"  # noqa: S105 -- a throwaway account of the bench's own brokers
SITE = "site-a"
GOALS = {"10_nodes": 10e6, "1_node": 20e6}
"""Bytes per idle node-month (issue 13), and 20 idle workloads may add at most 20 %."""


# -- what the relay counts ------------------------------------------------------------------


@dataclass
class Tally:
    """Bytes by tree of the PUBLISH packets that carried them (the relay counts each way)."""

    trees: dict[str, int] = field(default_factory=dict)
    packets: dict[str, int] = field(default_factory=dict)
    trace: Any = None
    """A text file each packet is written to (``--keep``), or None."""
    hellos: int = 0
    """Hellos that crossed: an agent's (re)connects."""
    startup_at: float = 0.0
    """When the last event or actual state crossed (a start's burst; monotonic)."""

    def snapshot(self) -> dict[str, Any]:
        return {
            "trees": dict(self.trees),
            "packets": dict(self.packets),
            "hellos": self.hellos,
        }


class MqttSplitter:
    """Splits one direction's byte stream into MQTT packets and charges each to a tree."""

    def __init__(self, tally: Tally, way: str) -> None:
        self.tally, self.way, self.buf = tally, way, bytearray()

    def feed(self, data: bytes) -> None:
        self.buf += data
        while True:
            size = self._packet_size()
            if size is None or len(self.buf) < size:
                return
            packet, self.buf = bytes(self.buf[:size]), self.buf[size:]
            self._charge(packet)

    def _packet_size(self) -> int | None:
        buf = self.buf
        length, mult = 0, 1
        for i in range(1, min(len(buf), 5)):
            length += (buf[i] & 0x7F) * mult
            if not buf[i] & 0x80:
                return i + 1 + length
            mult *= 128
        return None

    def _charge(self, packet: bytes) -> None:
        kind = packet[0] >> 4
        tree, topic_name = "mqtt", ""
        if kind == 3:  # PUBLISH: fixed header, then the topic's length and the topic
            i = 1
            while packet[i] & 0x80:
                i += 1
            i += 1
            n = int.from_bytes(packet[i : i + 2], "big")
            topic_name = packet[i + 2 : i + 2 + n].decode(errors="replace")
            topic = topic_name.split("/")
            tree = topic[2] if len(topic) > 2 and topic[:2] == ["fm", "v1"] else topic[0]
            if tree == "events" or topic[-1] == "actual":
                self.tally.startup_at = time.monotonic()
            if topic[-1] == "hello":
                self.tally.hellos += 1
        if self.tally.trace is not None:
            name = topic_name if kind == 3 else f"type{kind}"
            self.tally.trace.write(f"{time.monotonic():.3f} {self.way} {len(packet)} {name}\n")
        key = f"{self.way}:{tree}"
        self.tally.trees[key] = self.tally.trees.get(key, 0) + len(packet)
        self.tally.packets[key] = self.tally.packets.get(key, 0) + 1


class Relay:
    """The counting relay (``tests/support/relay.py``) from its port to the cloud broker, each
    direction's stream split into MQTT packets into one :class:`Tally`."""

    def __init__(self, target: int) -> None:
        self.tally = Tally()
        self.counting = CountingRelay(target, watch=lambda way: MqttSplitter(self.tally, way).feed)
        self.port = self.counting.port

    def snapshot(self) -> dict[str, Any]:
        return {**self.tally.snapshot(), "up": self.counting.up, "down": self.counting.down}

    async def start(self) -> None:
        await self.counting.start()

    async def close(self) -> None:
        await self.counting.close()


# -- one configuration ----------------------------------------------------------------------


@dataclass
class Config:
    nodes: int
    workloads: int
    design: str  # "on-change" or "previous" (the agents'); with ``cloud``, the link rules'
    sample_app: bool = False
    cloud: bool = False
    """The cloud tier as ``fogmesh up`` runs it (:class:`CloudRun`), the nodes idle."""

    @property
    def key(self) -> str:
        app = "-app" if self.sample_app else ""
        tier = "cloud-" if self.cloud else ""
        return f"{tier}{self.design}{app}/{self.nodes}n/{self.workloads}w"


def _mesh(root: Path, cloud: int, site: int, relay: int) -> Path:
    digest = hash_password(PASSWORD)
    users = [
        {"username": "bridge", "password_hash": digest, "role": "bridge"},
        {"username": "svc", "password_hash": digest, "role": "service"},
    ]

    def broker(name: str, port: int) -> dict[str, Any]:
        return {
            "listeners": [{"name": "default", "port": port}],
            "data_dir": str(root / name),
            "users": users,
        }

    cred = {"username": "bridge", "password": PASSWORD}
    link = {
        "name": "cloud",
        "broker": SITE,
        "kind": "wan",
        "local": cred,
        "remote": {"host": "127.0.0.1", "port": relay, **cred},
        "rules": link_rules(SITE),
    }
    mesh = {"brokers": {"cloud": broker("cloud", cloud), SITE: broker(SITE, site)}, "links": [link]}
    path = root / "mesh.json"
    path.write_text(json.dumps(mesh))
    return path


NARROWED = ("api", "ops", "reply")
"""The trees whose directions the previous design's link rules already narrowed."""


def previous_link_rules(site: str) -> list[dict[str, Any]]:
    """The previous design's WAN link rules (the cloud configurations' baseline): today's for
    the requests and replies, and every other tree of the topic catalogue both ways."""
    from fogmesh.protocol.catalogue import CATALOGUE

    trees = sorted({spec.pattern.split("/")[2] for spec in CATALOGUE} - set(NARROWED))
    kept = [r for r in link_rules(site) if r["pattern"].split("/")[2] in NARROWED]
    return kept + [{"pattern": f"fm/v1/{tree}/#", "direction": "both", "qos": 1} for tree in trees]


def _node(i: int) -> str:
    return f"{SITE}-node-{i:02d}"


def _agent_config(cfg: Config, root: Path, site_port: int, i: int) -> dict[str, Any]:
    return {
        "node_id": _node(i),
        "site": SITE,
        "state_dir": str(root / _node(i)),
        "broker": {"host": "127.0.0.1", "port": site_port, "username": "svc", "password": PASSWORD},
        "runtimes": ["native"],
        "native_isolation": "agent-user",
        "native_cgroup_parent": None,
        "heartbeat_on_change": cfg.design != "previous",
        "log_level": os.environ.get("FOGMESH_BENCH_LOG", "warning"),
        "workload_env": {
            "FM_BROKER_HOST": "127.0.0.1",
            "FM_BROKER_PORT": str(site_port),
            "FM_USERNAME": "svc",
            "FM_PASSWORD": PASSWORD,
        },
    }


def _sleeper(i: int) -> dict[str, Any]:
    return {
        "name": f"idle-{i:02d}",
        "tenant": "acme",
        "app": "idle",
        "component": f"s{i:02d}",
        "runtime": "native",
        "executable": "/bin/sleep",
        "command": ["infinity"],
    }


def _sample_app() -> list[dict[str, Any]]:
    def comp(name: str) -> dict[str, Any]:
        return {
            "name": f"sensor-app-{name}-0",
            "tenant": "acme",
            "app": "sensor-app",
            "component": name,
            "runtime": "native",
            "executable": sys.executable,
            "command": ["-m", f"fogmesh_sample.{name}"],
            "env": {"FM_TENANT": "acme", "FM_APP": "sensor-app", "FM_LOG_LEVEL": "warning"},
        }

    return [comp("sensor"), comp("convolve")]


class Run:
    """The processes of one configuration and its relay."""

    user, password, link = "svc", PASSWORD, "cloud"
    """The account the bench reads and writes the brokers with, and the site link's name."""

    @property
    def hellos(self) -> int:
        """The hellos that cross the link once every agent has started."""
        return self.cfg.nodes

    def __init__(self, cfg: Config, base: Path, stagger: float, *, keep: bool = False) -> None:
        self.cfg, self.stagger = cfg, stagger
        self.root = base / cfg.key.replace("/", "_")
        self.root.mkdir(parents=True)
        self.cloud, self.site = self._ports()
        self.relay = Relay(self.cloud)
        if keep:
            self.relay.tally.trace = (self.root / "packets.txt").open("w")
        self.procs: list[subprocess.Popen[bytes]] = []

    def _ports(self) -> tuple[int, int]:
        """The cloud broker's port and the site broker's."""
        return free_port(), free_port()

    def _start(self, name: str, *argv: str, env: dict[str, str] | None = None) -> None:
        with (self.root / f"{name}.log").open("ab") as log:
            self.procs.append(
                subprocess.Popen(
                    list(argv),
                    cwd=REPO,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    env=None if env is None else {**os.environ, **env},
                )
            )

    async def start(self) -> None:
        await self.relay.start()
        mesh = _mesh(self.root, self.cloud, self.site, self.relay.port)
        broker = [
            sys.executable,
            "-m",
            "fogmesh.broker",
            "--log-level",
            "WARNING",
            "run",
            "--mesh",
            str(mesh),
            "--broker",
        ]
        self._start("cloud", *broker, "cloud")
        self._start("site", *broker, SITE)
        await asyncio.to_thread(wait_port, self.cloud, 60)
        await asyncio.to_thread(wait_port, self.site, 60)
        configs = [_agent_config(self.cfg, self.root, self.site, i) for i in range(self.cfg.nodes)]
        self._start_agents(configs)
        for i in range(self.cfg.nodes):
            work = [_sleeper(w) for w in range(self.cfg.workloads)]
            if self.cfg.sample_app and i == 0:
                work += _sample_app()
            desired = {"node": _node(i), "generation": 1, "workloads": work}
            await asyncio.to_thread(
                self._publish_cloud, f"fm/v1/nodes/{_node(i)}/desired", json.dumps(desired)
            )

    def _start_agents(self, configs: list[dict[str, Any]]) -> None:
        """The agents' process (``--agents``), starting them spread over the stagger."""
        spec = self.root / "agents.json"
        at_once = self.cfg.design == "usage-at-once"
        busy = [configs[0]["state_dir"]] if self.cfg.sample_app else []  # the app's node
        spec.write_text(json.dumps({
            "stagger_s": self.stagger, "agents": configs, "usage_at_once": at_once, "busy": busy,
        }))  # fmt: skip
        self._start("agents", sys.executable, str(HERE / "wan.py"), "--agents", str(spec))

    def _publish_cloud(self, topic: str, payload: str) -> None:
        args = [
            "mosquitto_pub",
            "-h",
            "127.0.0.1",
            "-p",
            str(self.cloud),
            "-q",
            "1",
            "-r",
            "-u",
            self.user,
            "-P",
            self.password,
            "-t",
            topic,
            "-m",
            payload,
        ]
        subprocess.run(args, check=True, timeout=60, capture_output=True)

    def running(self) -> int:
        """Workloads running, as the nodes' retained actual states on the cloud say."""
        args = [
            "mosquitto_sub",
            "-h",
            "127.0.0.1",
            "-p",
            str(self.cloud),
            "-u",
            self.user,
            "-P",
            self.password,
            "-t",
            "fm/v1/nodes/+/actual",
            "-W",
            "3",
            "-v",
        ]
        done = subprocess.run(args, check=False, timeout=60, capture_output=True, text=True)
        count = 0
        for line in done.stdout.splitlines():
            _, _, payload = line.partition(" ")
            with contextlib.suppress(ValueError):
                data = json.loads(payload)
                count += sum(1 for w in data.get("workloads", []) if w.get("phase") == "running")
        return count

    def link_queue(self) -> int:
        """Messages the site's link still holds to cross (its retained status on the cloud)."""
        status = self._link_status(self.cloud)
        if status is None:
            return -1
        return int(status.get("queue_depth", 0)) + int(status.get("backlog", 0))

    def link_wire(self) -> tuple[int, int]:
        """The link's own count of the bytes on its remote sockets (out, in), from its status
        on the site broker (published there when they change, every 5 s at most)."""
        status = self._link_status(self.site)
        if status is None:
            return -1, -1
        return int(status.get("wire_bytes_out", -1)), int(status.get("wire_bytes_in", -1))

    def _link_status(self, port: int) -> dict[str, Any] | None:
        """The site link's retained status on the broker at ``port`` (None: none came)."""
        args = ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-u", self.user,
                "-P", self.password, "-t", f"fm/v1/mesh/{SITE}/links/{self.link}",
                "-W", "3", "-C", "1"]  # fmt: skip
        done = subprocess.run(args, check=False, timeout=60, capture_output=True, text=True)
        try:
            status = json.loads(done.stdout)
        except ValueError:
            return None
        return status if isinstance(status, dict) else None

    def stop(self) -> None:
        """Stop the processes, then the workloads (which outlive their agent by design)."""
        for proc in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in reversed(self.procs):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        import psutil

        for shim in psutil.process_iter(["cmdline"]):
            with contextlib.suppress(psutil.Error):
                if str(self.root) in " ".join(shim.info["cmdline"] or []):
                    for child in shim.children(recursive=True):
                        child.kill()
                    shim.kill()


class CloudRun(Run):
    """A configuration with the cloud tier as ``fogmesh up`` runs it: the fleet plan's mesh
    (a cloud and two site brokers, its WAN link rules), accounts and service configs
    (:class:`fogmesh.cli.fleet.plan.FleetPlan`), the services ``fogmesh up`` starts on the
    cloud (registry, scheduler, migrator, artefact store) and on each site (migrator, artefact
    cache), and ``nodes`` idle agents on each site (the plan's agent configs with the agent's
    own longest heartbeat gap, as on a WAN). Only ``site-a``'s link dials the cloud
    through the relay: its bytes are the figure, the other site's traffic crossing it included.
    The baseline (``previous``) is the same fleet with the previous design's link rules."""

    link = f"{SITE}-cloud"

    def __init__(self, cfg: Config, base: Path, stagger: float, *, keep: bool = False) -> None:
        from fogmesh.cli.fleet.plan import FleetPlan

        self.plan = FleetPlan.make(base / cfg.key.replace("/", "_") / "fleet", 2 * cfg.nodes,
                                   "native")  # fmt: skip
        super().__init__(cfg, base, stagger, keep=keep)
        self.user, self.password = "operator", self.plan.accounts["operator"].password

    @property
    def hellos(self) -> int:
        """This site's nodes' hellos go up (with the previous rules the other site's come down)."""
        return self.cfg.nodes * (2 if self.cfg.design == "previous" else 1)

    def _ports(self) -> tuple[int, int]:
        return self.plan.ports["cloud"], self.plan.ports[SITE]

    def _mesh(self) -> Path:
        mesh = self.plan.mesh()
        for link in mesh["links"]:
            if self.cfg.design == "previous":
                link["rules"] = previous_link_rules(link["broker"])
            if link["broker"] == SITE:
                remote = link["remote"]
                remote.pop("broker")
                link["remote"] = {"host": "127.0.0.1", "port": self.relay.port, **remote}
        path = self.root / "mesh.json"
        path.write_text(json.dumps(mesh))
        return path

    async def start(self) -> None:
        from fogmesh.cli.fleet.plan import SITES

        await self.relay.start()
        paths = self.plan.write_files()
        mesh = self._mesh()
        for name in ("cloud", *SITES):
            self._start(name, sys.executable, "-m", "fogmesh.broker", "--log-level", "WARNING",
                        "run", "--mesh", str(mesh), "--broker", name)  # fmt: skip
        for name in ("cloud", *SITES):
            await asyncio.to_thread(wait_port, self.plan.ports[name], 60)
        # what fogmesh up starts (fleet/command.py, start_services), by the same commands
        for spec in self.plan.registries():
            self._start(spec.name, sys.executable, "-m", spec.module, *spec.args, env=spec.env)
        for name in self.plan.schedulers():
            self._start(name, sys.executable, "-m", "fogmesh.scheduler", "--config",
                        str(paths[name]))  # fmt: skip
        migrator = str(Path(sys.executable).parent / "fogmesh-migrator")
        for name in ("migrator", *(f"migrator-{site}" for site in SITES)):
            self._start(name, migrator, "--config", str(paths[name]))
        self._start("artefacts", sys.executable, "-m", "fogmesh.artefacts", "store",
                    "--config", str(paths["artefacts"]))  # fmt: skip
        for site in SITES:
            name = f"artefact-cache-{site}"
            self._start(name, sys.executable, "-m", "fogmesh.artefacts", "cache",
                        "--config", str(paths[name]))  # fmt: skip
        configs = []
        for node in self.plan.nodes:
            config = self.plan.agent_config(node)
            # the agent's longest heartbeat gap, a WAN fleet's (not the one-machine demo's)
            config.pop("heartbeat_max_interval_s")
            config.update(
                runtimes=["native"], native_isolation="agent-user", native_cgroup_parent=None,
                log_level=os.environ.get("FOGMESH_BENCH_LOG", "warning"),
            )  # fmt: skip
            configs.append(config)
        self._start_agents(configs)


async def _counters(run: Run) -> tuple[dict[str, Any], tuple[int, int], float, bool]:
    """The relay's tally, the link's own counters and when, at one moment: the link's status on
    the site broker follows its counters within 5 s, so it is read until neither it nor the
    relay's counts moved over 6 s, for 30 s at most (then False: e.g. the app's data flows)."""
    deadline = time.monotonic() + 30
    before: tuple[tuple[int, int], tuple[int, int]] | None = None
    while True:
        snap, at = run.relay.snapshot(), time.monotonic()
        wire = await asyncio.to_thread(run.link_wire)
        now = (wire, (snap["up"], snap["down"]))
        # the link's counters and the relay's both unchanged over 6 s: the status is current
        caught = now == before
        if caught or time.monotonic() > deadline:
            return snap, wire, at, caught
        before = now
        await asyncio.sleep(6)


async def measure(cfg: Config, base: Path, args: argparse.Namespace) -> dict[str, Any]:
    run = (CloudRun if cfg.cloud else Run)(cfg, base, args.stagger, keep=args.keep)
    duration, settle = args.duration, args.settle
    try:
        await run.start()
        want = cfg.nodes * cfg.workloads + (2 if cfg.sample_app else 0)
        deadline = time.monotonic() + 600
        while (got := await asyncio.to_thread(run.running)) < want or (
            run.relay.tally.hellos < run.hellos
        ):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{cfg.key}: {got} of {want} workloads running")
            await asyncio.sleep(5)
        # the start's burst (every workload's events and actual states) crosses first: the
        # link's queue is empty and no event or actual state crossed for ``settle`` seconds
        while (
            await asyncio.to_thread(run.link_queue) != 0
            or time.monotonic() - run.relay.tally.startup_at < settle
        ):
            if time.monotonic() > deadline + 600:
                raise RuntimeError(f"{cfg.key}: the start's burst did not end")
            await asyncio.sleep(5)
        start, wire0, t0, caught0 = await _counters(run)
        await asyncio.sleep(duration)
        end, wire1, t1, caught1 = await _counters(run)
    finally:
        run.stop()
        await run.relay.close()
    seconds = t1 - t0
    relayed = end["up"] - start["up"] + end["down"] - start["down"]
    counted = min(wire0 + wire1) >= 0
    # the link's own counters when it has them (LinkStatus.wire_bytes_*), else the relay's
    both = wire1[0] - wire0[0] + wire1[1] - wire0[1] if counted else relayed
    trees = {k: v - start["trees"].get(k, 0) for k, v in end["trees"].items()}
    packets = {k: v - start["packets"].get(k, 0) for k, v in end["packets"].items()}
    scale = MONTH_S / seconds / cfg.nodes
    return {
        "key": cfg.key,
        "seconds": round(seconds, 1),
        "bytes_up": end["up"] - start["up"],
        "bytes_down": end["down"] - start["down"],
        "agent_reconnects": end["hellos"] - start["hellos"],
        "counted_by": "link" if counted else "relay",
        "link_counters_caught_up": [caught0, caught1],
        "link_wire_bytes_out": wire1[0] - wire0[0] if counted else None,
        "link_wire_bytes_in": wire1[1] - wire0[1] if counted else None,
        "bytes_per_node_month": round(both * scale),
        "relay_bytes_per_node_month": round(relayed * scale),
        # by the relay's split (the link's counters lag it by up to 5 s of traffic, and with the
        # app's data flowing that lag alone is about 1 % of the data)
        "without_app_data_per_node_month": round(
            sum(v for k, v in trees.items() if not k.endswith(":data")) * scale
        ),
        "by_tree_per_node_month": {k: round(v * scale) for k, v in sorted(trees.items()) if v},
        "packets": {k: v for k, v in sorted(packets.items()) if v},
    }


def _figures(
    results: dict[str, dict[str, Any]], design: str, *, plain: bool = True
) -> dict[str, dict[str, int]]:
    """``{site size: {workloads: bytes per node-month}}`` of one design (``plain``: all the
    bytes; else without the app's own data, ``fm/v1/data``)."""
    figure = "bytes_per_node_month" if plain else "without_app_data_per_node_month"
    out: dict[str, dict[str, int]] = {}
    for nodes, size in ((1, "1_node"), (10, "10_nodes")):
        for w in (0, 20):
            r = results.get(f"{design}/{nodes}n/{w}w")
            if r is not None:
                out.setdefault(size, {})[str(w)] = r[figure]
    return out


def _verdicts(figures: dict[str, dict[str, int]]) -> dict[str, str]:
    out = {}
    for size, goal in GOALS.items():
        got = figures.get(size, {})
        if "0" in got:
            ok = got["0"] <= goal
            out[f"{size} idle <= {goal / 1e6:g} MB"] = (
                f"{'met' if ok else 'MISSED'}: {got['0'] / 1e6:.2f} MB"
            )
        if "0" in got and "20" in got and got["0"]:
            extra = got["20"] / got["0"] - 1
            ok = extra <= 0.20
            out[f"{size} 20 workloads add <= 20%"] = f"{'met' if ok else 'MISSED'}: {extra:+.1%}"
    return out


APP_DESIGNS = ("on-change", "usage-at-once", "previous")
"""The sample app's agents: today's heartbeats, the same with usage news at every sampling tick
(the design before the usage wait: the baseline), and the previous design (every tick)."""


def _cloud_tier(results: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """The cloud configurations' figures: per design, site size, bytes per idle node-month."""
    out: dict[str, Any] = {}
    for design in ("lean", "previous"):
        for nodes, size in ((1, "1_node"), (10, "10_nodes")):
            r = results.get(f"cloud-{design}/{nodes}n/0w")
            if r is None:
                continue
            out.setdefault("wan_bytes_per_node_month", {}).setdefault(design, {})[size] = r[
                "bytes_per_node_month"
            ]
            out.setdefault("by_tree_per_node_month", {}).setdefault(design, {})[size] = r[
                "by_tree_per_node_month"
            ]
            out.setdefault("relay_bytes_per_node_month", {}).setdefault(design, {})[size] = r[
                "relay_bytes_per_node_month"
            ]
    if not out:
        return None
    lean = out["wan_bytes_per_node_month"].get("lean", {})
    out["goals"] = {
        f"{size} idle <= {goal / 1e6:g} MB": (
            f"{'met' if lean[size] <= goal else 'MISSED'}: {lean[size] / 1e6:.2f} MB"
        )
        for size, goal in GOALS.items()
        if size in lean
    }
    return out


def _merged(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """``new`` over ``old``: keys this run measured replace theirs, the rest are kept (each
    group of figures names the run it came from)."""
    out = dict(old)
    for key, value in new.items():
        if value is None or value == {}:
            continue
        if key in ("configurations", "goals") and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


async def main_async(args: argparse.Namespace) -> None:
    configs = [Config(n, w, d) for d in ("on-change", "previous") for n in (1, 10) for w in (0, 20)]
    if args.sample_app:
        configs += [Config(n, 0, d, sample_app=True) for d in APP_DESIGNS for n in (1, 10)]
    if args.cloud:
        configs += [Config(n, 0, d, cloud=True) for d in ("lean", "previous") for n in (1, 10)]
    if args.only:
        configs = [c for c in configs if any(o in c.key for o in args.only)]
    base = Path(tempfile.mkdtemp(prefix="fm-wan-"))
    load_before = load_average()
    try:
        done = await asyncio.gather(*(measure(c, base, args) for c in configs))
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    run: dict[str, Any] = {
        "seconds_per_configuration": args.duration,
        "agents_started_within_s": args.stagger,
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    results = {r["key"]: {**r, "run": run} for r in done}
    figures = _figures(results, "on-change")
    app = {
        design: {s: v.get("0") for s, v in _figures(results, f"{design}-app").items()}
        for design in APP_DESIGNS
    }
    app_fogmesh = {
        design: {s: v.get("0") for s, v in _figures(results, f"{design}-app", plain=False).items()}
        for design in APP_DESIGNS
    }
    has_app = any(c.sample_app for c in configs)
    cloud = _cloud_tier(results)
    payload: dict[str, Any] = {
        "wan_bytes_per_node_month": figures,
        "baseline_wan_bytes_per_node_month": _figures(results, "previous"),
        "sample_app_wan_bytes_per_node_month": app if has_app else None,
        "sample_app_without_its_data_per_node_month": app_fogmesh if has_app else None,
        "sample_app_run": run if has_app else None,
        "cloud_tier": None if cloud is None else {**cloud, "run": run},
        "goals": _verdicts(figures),
        **(run if figures else {}),
        "setup": "embedded brokers (cloud, site) and fogmesh up's WAN link rules; real agents "
        "(native runtime, sleep workloads), steady idle node usage; relay counts socket bytes; "
        "cloud_tier: fogmesh up's fleet plan (cloud and two site brokers, registry, scheduler, "
        "migrators, artefact store and caches), idle agents on both sites, site-a's link counted; "
        "sample app: its node reports a busy box's usage (CPU 20-80 %, memory 1.0-1.4 of 2 GB), "
        "what crosses besides the app's data split by the relay",
        "configurations": results,
    }
    print(
        f"\nWAN bytes per node-month (link socket, both ways; {args.duration:.0f} s each, "
        f"load {load_before} -> {load_average()})"
    )
    print(f"{'configuration':34} {'bytes/node-month':>18} {'MB':>8}   biggest trees")
    for key, r in sorted(results.items()):
        top = sorted(r["by_tree_per_node_month"].items(), key=lambda kv: -kv[1])[:4]
        trees = ", ".join(f"{k} {v / 1e6:.2f}" for k, v in top)
        month = r["bytes_per_node_month"]
        again = r["agent_reconnects"]
        print(f"{key:34} {month:>18,} {month / 1e6:>8.2f}   {trees}; {again} reconnects")
    for design, sizes in app_fogmesh.items() if has_app else ():
        shown = ", ".join(f"{s} {v / 1e6:.2f} MB" for s, v in sizes.items() if v is not None)
        print(f"sample app, without its data, {design}: {shown}")
    goals = {
        **payload["goals"],
        **{f"cloud tier {k}": v for k, v in (cloud or {}).get("goals", {}).items()},
    }
    for goal, verdict in goals.items():
        print(f"goal {goal}: {verdict}")
    name = "wan-only" if args.only and not args.merge else "wan"
    if args.merge:
        old = json.loads((RESULTS / "wan.json").read_text())
        payload = _merged(
            {k: v for k, v in old.items() if k not in ("benchmark", "when", "machine")}, payload
        )
    print(f"written to {write_result(name, payload)}")


# -- the agents' process --------------------------------------------------------------------


def _usage(cpu: tuple[float, float], memory_mb: tuple[int, int], load: tuple[float, float]) -> Any:
    """An edge box's usage sample: CPU and load drawn from their ranges, memory in ``memory_mb``
    of 2 GB, the disk moving by a few MB."""
    from fogmesh.protocol import Usage

    mb = 1 << 20
    return Usage(
        cpu_percent=round(random.uniform(*cpu), 1),
        memory_used_bytes=memory_mb[0] * mb + random.randrange((memory_mb[1] - memory_mb[0]) * mb),
        memory_total_bytes=2048 * mb,
        disk_used_bytes=9000 * mb + random.randrange(4 * mb),
        disk_total_bytes=32000 * mb,
        load1=round(random.uniform(*load), 2),
    )


def _steady_usage(_state_dir: Path) -> Any:
    """An idle edge box's usage: CPU 1-3 %, memory and disk moving by a few MB."""
    return _usage((1.0, 3.0), (600, 604), (0.0, 0.2))


def _busy_usage(_state_dir: Path) -> Any:
    """A busy edge box's usage (the node running the sample app): CPU anywhere in 20-80 % and
    memory in 1,000-1,400 MB of 2 GB at each sample, so nearly every sample is news."""
    return _usage((20.0, 80.0), (1000, 1400), (0.5, 2.0))


async def run_agents(spec: Path) -> None:
    """Every agent of ``spec`` (a list of agent configs) in this process, until SIGTERM."""
    from fogmesh.agent import service
    from fogmesh.agent.config import AgentConfig
    from fogmesh.service import configure_logging

    data = json.loads(await asyncio.to_thread(spec.read_text))
    busy = {str(Path(d)) for d in data.get("busy", [])}

    def usage(state_dir: Path) -> Any:
        return (_busy_usage if str(state_dir) in busy else _steady_usage)(state_dir)

    service.sample_usage = usage  # type: ignore[attr-defined]
    stagger = float(data["stagger_s"])
    configs = [AgentConfig.model_validate(c) for c in data["agents"]]
    configure_logging(configs[0].log_level)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)

    async def one(n: int, config: AgentConfig) -> None:
        await asyncio.sleep(n * stagger / len(configs))  # nodes that did not start together
        agent = service.Agent(config)
        if data.get("usage_at_once"):  # the baseline: usage news at the first tick with it
            agent.beats.usage_min_s = 0.0
        await agent.run()

    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(one(n, c)) for n, c in enumerate(configs)]
        await stop.wait()
        for task in tasks:
            task.cancel()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="90 s per configuration")
    parser.add_argument("--duration", type=float, default=1200.0, help="seconds measured")
    parser.add_argument("--stagger", type=float, default=300.0, help="a site's agents start within")
    parser.add_argument("--settle", type=float, default=30.0, help="seconds before measuring")
    parser.add_argument("--sample-app", action="store_true", help="also with the sample app")
    parser.add_argument("--cloud", action="store_true", help="also with fogmesh up's cloud tier")
    parser.add_argument(
        "--merge", action="store_true", help="into bench/results/wan.json, keeping what it has"
    )
    parser.add_argument("--only", nargs="*", help="configurations whose key has one of these")
    parser.add_argument("--keep", action="store_true", help="keep the run's directory")
    parser.add_argument("--agents", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.agents is not None:
        asyncio.run(run_agents(args.agents))
        return
    if args.quick:
        args.duration, args.stagger = min(args.duration, 90.0), min(args.stagger, 30.0)
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
