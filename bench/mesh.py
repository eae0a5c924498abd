"""Broker-mesh benchmark: bridge-hop latency, bridge throughput, queue drain after a partition.

Runs real processes on loopback: a site broker (embedded amqtt, with its link) and a cloud
broker that is either embedded amqtt or Mosquitto. The bench's publishers and subscribers are
plain paho clients (each network loop in a thread, as the issue's Mosquitto figures were
measured), so the clients are not what limits the figures. In the same run, the peer
baseline: a site Mosquitto whose own bridge (``connection`` block, QoS 1, persistent session)
carries the same rule to a cloud Mosquitto, measured the same way (``peer_hop_ratio``,
``peer_burst_msgs_per_s``, ``peer_drain_msgs_per_s`` beside fogmesh's ``hop_ratio``,
``burst_msgs_per_s``, ``drain_msgs_per_s`` on each cloud end). On the fogmesh ends it also
reads the bytes the link put on its sockets from its status (``wire_bytes_out`` /
``wire_bytes_in`` to and from the cloud, ``local_wire_bytes_*`` on the site) after the burst,
and the WAN bytes per burst message (``burst_wire_bytes_per_msg``). Prints figures and writes
``bench/results/mesh.json``.

    .venv/bin/python bench/mesh.py            # 5 s partition
    .venv/bin/python bench/mesh.py --full     # 60 s partition

Goals (issue 13): one hop <= 2x direct p50 on both cloud ends; burst and drain at least the
Mosquitto bridge's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import logging
import queue
import threading
import uuid

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from fogmesh.protocol import LinkStatus, topics
from tests.support.brokers import BrokerProcess, free_port, wait_port
from tests.support.mesh import MeshProcess
from tests.support.mesh_file import PASSWORDS, broker_spec, link_spec, port_of, write_mesh
from tests.support.mqtt import client

logging.getLogger("mqtt").setLevel(logging.ERROR)  # aiomqtt warns on every pipelined publish
RULES = [{"pattern": "b/#", "direction": "out", "qos": 1}]
INFLIGHT = 100
"""QoS 1 publishes a bench publisher keeps in flight (paho's default is 20)."""


def pct(values: list[float], p: float) -> float:
    """The p-th percentile (0-100) of ``values``, in the values' unit."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


class Paho:
    """A paho client with its network loop in a thread; arrivals go to :attr:`arrived`."""

    def __init__(
        self, port: int, user: str | None, *, ident: str | None = None, clean: bool = True
    ) -> None:
        self.port = port
        self.arrived: queue.Queue[bytes] = queue.Queue()
        self.mqtt = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=ident or f"{user or 'bench'}-b{uuid.uuid4().hex[:10]}",
            clean_session=clean,
        )
        if user is not None:
            self.mqtt.username_pw_set(user, PASSWORDS[user])
        self.mqtt.max_inflight_messages_set(INFLIGHT)
        self.mqtt.max_queued_messages_set(0)
        self.mqtt.on_message = lambda _c, _u, msg: self.arrived.put(bytes(msg.payload))
        self._up = threading.Event()
        self.mqtt.on_connect = lambda *_a: self._up.set()

    def __enter__(self) -> Paho:
        self.mqtt.connect("127.0.0.1", self.port, keepalive=60)
        self.mqtt.loop_start()
        if not self._up.wait(30):
            raise TimeoutError(f"no CONNACK from port {self.port}")
        return self

    def __exit__(self, *exc: object) -> None:
        self.mqtt.disconnect()
        self.mqtt.loop_stop()

    def subscribe(self, topic: str) -> None:
        """Subscribe at QoS 1 and wait for the SUBACK."""
        done = threading.Event()
        self.mqtt.on_subscribe = lambda *_a: done.set()
        self.mqtt.subscribe(topic, qos=1)
        if not done.wait(30):
            raise TimeoutError(f"no SUBACK for {topic}")

    def publish_all(self, topic: str, payloads: list[bytes], timeout: float) -> None:
        """Publish at QoS 1 (paho keeps :data:`INFLIGHT` in flight); wait for every PUBACK."""
        infos = [self.mqtt.publish(topic, p, qos=1) for p in payloads]
        deadline = time.monotonic() + timeout
        for info in infos:
            info.wait_for_publish(max(0.0, deadline - time.monotonic()))
            if not info.is_published():
                raise TimeoutError(f"{topic}: not acknowledged within {timeout:.0f} s")


def latency(
    pub_port: int, sub_port: int, n: int, pub_user: str | None, sub_user: str | None
) -> list[float]:
    """One message at a time, publish -> arrival, in milliseconds."""
    out: list[float] = []
    with Paho(sub_port, sub_user) as sub, Paho(pub_port, pub_user) as pub:
        sub.subscribe("b/lat")
        time.sleep(0.5)
        for i in range(n + 20):
            t0 = time.perf_counter()
            pub.mqtt.publish("b/lat", str(i).encode(), qos=1)
            payload = sub.arrived.get(timeout=30)
            if i >= 20 and payload == str(i).encode():  # the first 20 warm up
                out.append((time.perf_counter() - t0) * 1000)
    return out


def drain(sub: Paho, n: int, prefix: bytes, timeout: float) -> tuple[int, float]:
    """Receive until ``n`` distinct ``prefix`` messages arrived; (distinct, seconds)."""
    seen: set[bytes] = set()
    t0 = time.perf_counter()
    last = t0
    deadline = time.monotonic() + timeout
    while len(seen) < n:
        try:
            payload = sub.arrived.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            print(f"  ! only {len(seen)} of {n} {prefix!r} messages arrived within {timeout:.0f} s")
            break
        if payload.startswith(prefix):
            seen.add(payload)
            last = time.perf_counter()
    return len(seen), last - t0


async def link_status(
    port: int, user: str | None, forwarded: int = 0, timeout: float = 20.0
) -> LinkStatus | None:
    """The site link's retained status once it counts ``forwarded`` messages (None: not seen)."""
    found: LinkStatus | None = None
    async with client(port, user) as c:
        await c.subscribe(topics.mesh_link("site", "wan"), qos=1)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                async for msg in c.messages:
                    if isinstance(msg.payload, bytes):
                        found = LinkStatus.model_validate_json(msg.payload)
                        if found.forwarded >= forwarded:
                            break
    return found


def cpu_s(procs: list[subprocess.Popen[bytes] | None]) -> float:
    """CPU seconds (user + system) the processes used so far (Linux ``/proc``)."""
    total = 0
    for proc in procs:
        if proc is not None:
            fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def wire_figures(status: LinkStatus | None, before: LinkStatus | None, n: int) -> dict[str, Any]:
    """The link's socket byte counts, and the WAN bytes per message of the burst."""
    if status is None:
        return {}
    out: dict[str, Any] = {
        "wire_bytes_out": status.wire_bytes_out,
        "wire_bytes_in": status.wire_bytes_in,
        "local_wire_bytes_out": status.local_wire_bytes_out,
        "local_wire_bytes_in": status.local_wire_bytes_in,
    }
    if before is not None and n:
        out["burst_wire_bytes_per_msg"] = (status.wire_bytes_out - before.wire_bytes_out) / n
    return out


def _let_mosquitto_persist(tmp: Path, workdir: Path) -> None:
    """Let Mosquitto write its database (the subscriber's session) into ``workdir``.

    Started as root, Mosquitto drops to the ``mosquitto`` user, which cannot write into a
    root-owned temporary directory: the session then dies with the broker and nothing queued
    for the subscriber during the partition is ever delivered.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        tmp.chmod(0o711)  # traversable
        workdir.chmod(0o777)  # writable by whichever user Mosquitto runs as


class MosquittoBridge:
    """A site Mosquitto bridging ``b/#`` out at QoS 1 to a cloud Mosquitto: the peer baseline.

    Persistent bridge session (``cleansession false``), its queue on disk like the cloud's, and
    a 1 s reconnect (fogmesh's link retries within about a second too).
    """

    def __init__(self, workdir: Path, cloud_port: int, *, bridge: bool = True) -> None:
        """``bridge=False``: the same site Mosquitto without its bridge (``links-only``, where
        fogmesh's link carries the rule; the queue limits of ``render-mosquitto``'s files)."""
        self.workdir = workdir
        self.bridge = bridge
        self.port = free_port()
        self.cloud_port = cloud_port
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> MosquittoBridge:
        """Write the configuration and start Mosquitto; return once it listens."""
        _let_mosquitto_persist(self.workdir.parent, self.workdir)
        conf = self.workdir / "site.conf"
        conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence true\n"
            f"persistence_location {self.workdir}/\n"
            "max_queued_messages 1000000\n"
            "set_tcp_nodelay true\n"
        )
        if self.bridge:
            conf.write_text(
                conf.read_text() + "connection wan\n"
                f"address 127.0.0.1:{self.cloud_port}\n"
                "topic b/# out 1\n"
                "cleansession false\n"
                "clientid site-wan\n"
                "restart_timeout 1\n"
                "bridge_attempt_unsubscribe false\n"
            )
        log = (self.workdir / "site.log").open("ab")
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.proc = subprocess.Popen([exe, "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT)
        wait_port(self.port)
        return self

    def stop(self) -> None:
        """SIGTERM and wait."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


@dataclass
class Ends:
    """The processes of one configuration and where the bench's clients connect."""

    site: MeshProcess | MosquittoBridge
    site_port: int
    site_user: str | None
    cloud_port: int
    cloud_user: str | None
    mosq: BrokerProcess | None = None
    cloud: MeshProcess | None = None
    site_mosq: MosquittoBridge | None = None


def start_ends(kind: str, tmp: Path) -> Ends:
    """Start the site and cloud brokers of ``kind`` (amqtt or mosquitto cloud end behind a
    fogmesh site; ``peer``: Mosquitto's own bridge between two Mosquittos; ``links-only``:
    fogmesh's link alone, ``--no-broker`` between the same two Mosquittos as the peer)."""
    if kind == "links-only":
        _let_mosquitto_persist(tmp, tmp / "mosq")
        cloud_mosq = BrokerProcess("mosquitto", tmp / "mosq").start()
        # the site Mosquitto as the peer's, with render-mosquitto's queue limit (1,000,000):
        # a test broker's 100,000 dropped what a 5 s partition's publishers sent beyond it
        site_mosq = MosquittoBridge(tmp / "site-mosq", cloud_mosq.port, bridge=False).start()
        site_spec = broker_spec(tmp, "site", port=site_mosq.port, kind="mosquitto")
        only = link_spec("wan", "site", "cloud", RULES)
        only["remote"] = {"host": "127.0.0.1", "port": cloud_mosq.port}
        mesh = write_mesh(tmp / "mesh.yaml", {"site": site_spec}, [only])
        links = MeshProcess(mesh, "site", ["--no-broker"]).start()
        return Ends(
            links, site_mosq.port, None, cloud_mosq.port, None, mosq=cloud_mosq,
            site_mosq=site_mosq,
        )  # fmt: skip
    if kind in ("peer", "mosquitto"):
        _let_mosquitto_persist(tmp, tmp / "mosq")
        mosq = BrokerProcess("mosquitto", tmp / "mosq").start()
        if kind == "peer":
            bridge = MosquittoBridge(tmp / "site", mosq.port).start()
            return Ends(bridge, bridge.port, None, mosq.port, None, mosq=mosq)
        remote: dict[str, Any] = {"host": "127.0.0.1", "port": mosq.port}
        brokers = {"site": broker_spec(tmp, "site")}
    else:
        mosq = None
        remote = {"broker": "cloud", "username": "bridge", "password": "bridge-pw"}
        brokers = {"site": broker_spec(tmp, "site"), "cloud": broker_spec(tmp, "cloud")}
    link = link_spec("wan", "site", "cloud", RULES)
    link["remote"] = remote
    mesh = write_mesh(tmp / "mesh.yaml", brokers, [link])
    cloud = None
    if mosq is not None:
        cloud_port, cloud_user = mosq.port, None
    else:
        cloud = MeshProcess(mesh, "cloud").start()
        cloud_port, cloud_user = port_of(mesh, "cloud"), "svc"
    site = MeshProcess(mesh, "site").start()
    return Ends(site, port_of(mesh, "site"), "svc", cloud_port, cloud_user, mosq=mosq, cloud=cloud)


async def bench_end(
    kind: str, tmp: Path, partition: float, n_tput: int, args_timeout: float = 120.0
) -> dict[str, Any]:
    """All figures with the configuration ``kind`` (:func:`start_ends`)."""
    ends = start_ends(kind, tmp)
    mosq, cloud_proc, site_proc = ends.mosq, ends.cloud, ends.site
    site_port, site_user = ends.site_port, ends.site_user
    cloud_port, cloud_user = ends.cloud_port, ends.cloud_user
    try:
        direct = latency(cloud_port, cloud_port, 500, cloud_user, cloud_user)
        hop = latency(site_port, cloud_port, 500, site_user, cloud_user)
        res: dict[str, Any] = {
            "direct_p50_ms": pct(direct, 50),
            "direct_p99_ms": pct(direct, 99),
            "hop_p50_ms": pct(hop, 50),
            "hop_p99_ms": pct(hop, 99),
        }
        res["added_p50_ms"] = res["hop_p50_ms"] - res["direct_p50_ms"]
        res["added_p99_ms"] = res["hop_p99_ms"] - res["direct_p99_ms"]
        res["hop_ratio"] = res["hop_p50_ms"] / res["direct_p50_ms"]

        # the site's CPU per message (broker and link, or Mosquitto and its bridge): unlike
        # the rates, hardly moved by what else runs on the machine
        site_procs = [ends.site.proc, ends.site_mosq.proc if ends.site_mosq else None]
        fogmesh_site = isinstance(ends.site, MeshProcess)
        before = await link_status(site_port, site_user) if fogmesh_site else None
        # throughput: publish n QoS 1 messages at the site as fast as it takes them
        with (
            Paho(cloud_port, cloud_user, ident="bench-sub", clean=False) as sub,
            Paho(site_port, site_user) as pub,
        ):
            sub.subscribe("b/#")
            c0 = cpu_s(site_procs)
            t0 = time.perf_counter()
            pub.publish_all("b/t", [f"t-{i}".encode() for i in range(n_tput)], 300)
            got, _ = drain(sub, n_tput, b"t-", 300)
            res["burst_site_cpu_us_per_msg"] = (cpu_s(site_procs) - c0) * 1e6 / n_tput
            res["throughput_msgs"] = got
            res["throughput_msg_s"] = got / (time.perf_counter() - t0)
            res["burst_msgs_per_s"] = res["throughput_msg_s"]
        if fogmesh_site:
            done = (before.forwarded if before is not None else 0) + n_tput
            res.update(wire_figures(await link_status(site_port, site_user, done), before, n_tput))

        # partition: the cloud goes away, the site keeps publishing, the cloud comes back
        if mosq is not None:
            mosq.stop()  # SIGTERM: Mosquitto saves the subscriber's session
        else:
            assert cloud_proc is not None
            cloud_proc.kill()
        count = 0
        t_end = time.monotonic() + partition
        with Paho(site_port, site_user) as pub:
            while time.monotonic() < t_end:
                pub.publish_all("b/p", [f"p-{count + i}".encode() for i in range(100)], 60)
                count += 100
        await asyncio.sleep(1.0)
        if mosq is not None:
            mosq.start()
        else:
            assert cloud_proc is not None
            cloud_proc.start()
        c0 = cpu_s(site_procs)
        with Paho(cloud_port, cloud_user, ident="bench-sub", clean=False) as sub:
            got, seconds = drain(sub, count, b"p-", args_timeout)
        res["drain_site_cpu_us_per_msg"] = (cpu_s(site_procs) - c0) * 1e6 / max(1, count)
        res.update(
            partition_s=partition,
            queued_msgs=count,
            drained_msgs=got,
            drain_s=seconds,
            drain_msg_s=got / seconds if seconds > 0 else 0.0,
        )
        res["drain_msgs_per_s"] = res["drain_msg_s"]
        return res
    finally:
        site_proc.stop()
        if cloud_proc is not None:
            cloud_proc.stop()
        if mosq is not None:
            mosq.stop()
        if ends.site_mosq is not None:
            ends.site_mosq.stop()


def report(kind: str, r: dict[str, Any]) -> None:
    """Print one end's figures."""
    print(f"[cloud end: {kind}]")
    print(f"  direct publish      p50 {r['direct_p50_ms']:.2f} ms  p99 {r['direct_p99_ms']:.2f} ms")
    print(f"  through one hop     p50 {r['hop_p50_ms']:.2f} ms  p99 {r['hop_p99_ms']:.2f} ms")
    print(f"  added by the hop    p50 {r['added_p50_ms']:.2f} ms  p99 {r['added_p99_ms']:.2f} ms")
    print(f"  hop / direct p50    {r['hop_ratio']:.2f}x")
    print(
        f"  bridge throughput   {r['throughput_msg_s']:.0f} msg/s (QoS 1),"
        f" site CPU {r['burst_site_cpu_us_per_msg']:.0f} us/msg"
    )
    print(
        f"  partition drain     {r['drain_msg_s']:.0f} msg/s "
        f"({r['drained_msgs']} of {r['queued_msgs']} queued msgs arrived),"
        f" site CPU {r['drain_site_cpu_us_per_msg']:.0f} us/msg"
    )
    if "wire_bytes_out" in r:
        print(
            f"  link socket bytes   to cloud {r['wire_bytes_out']:,} B, from cloud"
            f" {r['wire_bytes_in']:,} B; site {r['local_wire_bytes_in']:,} B in,"
            f" {r['local_wire_bytes_out']:,} B out (after the burst)"
        )
    if "burst_wire_bytes_per_msg" in r:
        print(f"  WAN bytes per msg   {r['burst_wire_bytes_per_msg']:.1f} B (burst, to cloud)")


def write_results(results: dict[str, Any], name: str = "mesh") -> Path:
    """Write bench/results/{name}.json."""
    out = Path(__file__).resolve().parent / "results" / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    return out


async def main() -> None:
    """Run both ends and write the JSON result."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--full", action="store_true", help="60 s partition")
    parser.add_argument("--throughput-msgs", type=int, default=5000)
    parser.add_argument("--partition", type=float, default=None, help="override seconds")
    parser.add_argument(
        "--only", choices=["amqtt", "mosquitto", "links-only", "peer"], default=None
    )
    parser.add_argument(
        "--base",
        type=Path,
        default=None,
        help="A/B: a tree (e.g. `git archive` of a commit) whose broker/src runs the link in "
        "alternate rounds beside this one's; writes bench/results/mesh-ab.json",
    )
    parser.add_argument("--rounds", type=int, default=3, help="A/B rounds (with --base)")
    args = parser.parse_args()
    partition = args.partition or (60.0 if args.full else 5.0)
    if args.base is not None:
        await ab(args.base, args.only or "links-only", args.rounds, partition, args.throughput_msgs)
        return
    results: dict[str, Any] = {
        "partition_s": partition,
        "load_average": os.getloadavg(),
        "ends": {},
    }
    kinds = [args.only] if args.only else ["peer", "amqtt", "mosquitto", "links-only"]
    peer: dict[str, Any] | None = None
    for kind in kinds:
        with tempfile.TemporaryDirectory(prefix=f"fm-bench-{kind}-") as tmp:
            res = await bench_end(kind, Path(tmp), partition, args.throughput_msgs)
        report("mosquitto's own bridge (peer)" if kind == "peer" else kind, res)
        if kind == "peer":
            results["peer"] = peer = res
        else:
            results["ends"][kind] = res
    for res in results["ends"].values():
        if peer is not None:
            res["peer_hop_ratio"] = peer["hop_ratio"]
            res["peer_burst_msgs_per_s"] = peer["burst_msgs_per_s"]
            res["peer_drain_msgs_per_s"] = peer["drain_msgs_per_s"]
    if results["ends"]:
        results["median_added_p50_ms"] = statistics.median(
            r["added_p50_ms"] for r in results["ends"].values()
        )
    results["load_average_end"] = os.getloadavg()
    print(f"load average at the start {results['load_average']}, at the end", os.getloadavg())
    print(f"wrote {write_results(results)}")


AB_FIGURES = (
    "hop_ratio",
    "hop_p50_ms",
    "direct_p50_ms",
    "burst_msgs_per_s",
    "burst_site_cpu_us_per_msg",
    "drain_msgs_per_s",
    "drain_site_cpu_us_per_msg",
)


@contextlib.contextmanager
def link_tree(tree: Path | None) -> Iterator[None]:
    """Processes started in the block run ``tree``'s broker package (None: this tree's)."""
    if tree is None:
        yield
        return
    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str((tree / "broker" / "src").resolve()), *([before] if before else [])]
    )
    try:
        yield
    finally:
        if before is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = before


async def ab(base: Path, kind: str, rounds: int, partition: float, n_tput: int) -> None:
    """``kind`` with this tree's link and ``base``'s, alternating (the order flips each round),
    with Mosquitto's own bridge (the peer) once per round; medians of each side."""
    runs: dict[str, list[dict[str, Any]]] = {"current": [], "base": [], "peer": []}
    load = [os.getloadavg()]
    for r in range(rounds):
        order = [("current", None), ("base", base)]
        for name, tree in order if r % 2 == 0 else order[::-1]:
            with tempfile.TemporaryDirectory(prefix=f"fm-bench-{kind}-") as tmp, link_tree(tree):
                runs[name].append(await bench_end(kind, Path(tmp), partition, n_tput))
            print(name, {k: round(runs[name][-1][k], 2) for k in AB_FIGURES}, flush=True)
        with tempfile.TemporaryDirectory(prefix="fm-bench-peer-") as tmp:
            runs["peer"].append(await bench_end("peer", Path(tmp), partition, n_tput))
        print("peer", {k: round(runs["peer"][-1][k], 2) for k in AB_FIGURES}, flush=True)
        load.append(os.getloadavg())
    medians = {
        name: {k: statistics.median(x[k] for x in got) for k in AB_FIGURES}
        for name, got in runs.items()
    }
    for name, figures in medians.items():
        print(f"{name:8} median of {rounds}:", {k: round(v, 2) for k, v in figures.items()})
    out = write_results(
        {"kind": kind, "base": str(base), "rounds": rounds, "load_average": load,
         "medians": medians, "runs": runs},
        "mesh-ab",
    )  # fmt: skip
    print(f"load average {load[0]} -> {load[-1]}; wrote {out}")


if __name__ == "__main__":
    asyncio.run(main())
