"""Registry ingest: how fast heartbeats become queryable rows, against a real Mosquitto.

A simulator (child processes, several MQTT connections each, many simulated nodes per
connection) publishes real hello / state (retained, QoS 1) and heartbeat (QoS 0) messages; the
registry runs as its own process (``fogmesh-registry``, SQLite WAL). Figures per fleet size:

* ``lag``: time from a heartbeat's publish (its ``ts``) until its row is visible in the
  database, for a sample of up to 1,000 nodes, polled every 50 ms (so up to +50 ms pessimistic).
* ``baseline``: the raw broker publish -> subscribe latency of the same sampled heartbeats, to
  a plain subscriber in this process, in the same run.
* ``ingest_rate``: heartbeats committed per second over the window (all nodes), and the
  registry's CPU use (percent of one core).
* ``not_online``: nodes the registry judged stale or offline at the end (should be 0).

Default (short): 1,000 nodes every 1 s. ``--full``: 10,000 nodes every 10 s, then larger
fleets until p99 lag reaches 1 s (or nodes flap), printing the largest fleet that held.
Simulated nodes share connections, so they leave no per-node last will (not needed here).

Run: ``.venv/bin/python bench/registry.py [--full]`` (writes ``bench/results/registry.json``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiomqtt

RESULTS = Path(__file__).resolve().parent / "results" / "registry.json"
ROOT = "fm/v1/nodes"
SIM_PROCS = 2
CONNS_PER_PROC = 10
POLL_S = 0.05


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {port}")


# -- the simulator (runs in child processes) -----------------------------------------------


def hello_json(node: str) -> bytes:
    facts = {
        "device_id": node,
        "arch": "aarch64" if hash(node) % 2 else "x86_64",
        "cpu_count": 4,
        "memory_bytes": 8 << 30,
        "disk_bytes": 64 << 30,
        "labels": {"zone": f"z{hash(node) % 8}"},
        "location": {"lat": 48.0 + (hash(node) % 100) / 100, "lon": 11.0},
    }
    return json.dumps({"node": node, "facts": facts, "boot_id": "b1", "ts": time.time()}).encode()


def heartbeat_json(node: str, seq: int, interval: float) -> bytes:
    usage = {
        "cpu_percent": 12.5,
        "memory_used_bytes": 3 << 30,
        "memory_total_bytes": 8 << 30,
        "disk_used_bytes": 10 << 30,
        "disk_total_bytes": 64 << 30,
    }
    msg = {"node": node, "seq": seq, "interval_s": interval, "usage": usage, "ts": time.time()}
    return json.dumps(msg).encode()


async def sim_connection(
    port: int, cid: str, nodes: list[str], *, interval: float, until: float, stats: dict[str, float]
) -> None:
    """One MQTT connection carrying ``nodes``: join them, then heartbeat on a 50 ms wheel."""
    async with aiomqtt.Client(
        "127.0.0.1", port, identifier=cid, username=cid, max_queued_outgoing_messages=0
    ) as client:
        client.pending_calls_threshold = 1000  # 100 QoS 1 publishes in flight is on purpose
        for i in range(0, len(nodes), 100):
            chunk = nodes[i : i + 100]
            await asyncio.gather(
                *(
                    client.publish(f"{ROOT}/{n}/hello", hello_json(n), qos=1, retain=True)
                    for n in chunk
                )
            )
            state = [
                json.dumps({"node": n, "state": "online", "boot_id": "b1"}).encode() for n in chunk
            ]
            await asyncio.gather(
                *(
                    client.publish(f"{ROOT}/{n}/state", s, qos=1, retain=True)
                    for n, s in zip(chunk, state, strict=True)
                )
            )
        tick = 0.05
        slots = max(1, round(interval / tick))
        wheel: list[list[str]] = [[] for _ in range(slots)]
        for n in nodes:
            wheel[hash(n) % slots].append(n)
        seqs = dict.fromkeys(nodes, 0)
        start = time.monotonic()
        k = 0
        while time.time() < until:
            for n in wheel[k % slots]:
                await client.publish(f"{ROOT}/{n}/heartbeat", heartbeat_json(n, seqs[n], interval))
                seqs[n] += 1
                stats["published"] += 1
            k += 1
            delay = start + k * tick - time.monotonic()
            stats["max_late_s"] = max(stats["max_late_s"], -delay)
            if delay > 0:
                await asyncio.sleep(delay)


async def sim_main(
    port: int, prefix: str, first: int, count: int, *, interval: float, until: float
) -> None:
    nodes = [f"{prefix}{i:06d}" for i in range(first, first + count)]
    stats = {"published": 0.0, "max_late_s": 0.0}
    parts = [nodes[i::CONNS_PER_PROC] for i in range(CONNS_PER_PROC)]
    await asyncio.gather(
        *(
            sim_connection(
                port, f"sim-{prefix}{first}-{i}", part, interval=interval, until=until, stats=stats
            )
            for i, part in enumerate(parts)
            if part
        )
    )
    print(json.dumps(stats), flush=True)


# -- the measuring side ---------------------------------------------------------------------


def spawn(cmd: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
    """Start a child process (broker, registry or simulator)."""
    return subprocess.Popen(cmd, **kwargs)


async def wait_file(path: Path, timeout: float = 60.0) -> None:
    """Wait until ``path`` exists."""
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(path.exists):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} was not created")
        await asyncio.sleep(0.1)


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    data = sorted(values)

    def pick(q: float) -> float:
        return round(data[min(len(data) - 1, int(q * len(data)))] * 1000, 1)

    return {
        "n": len(data),
        "p50_ms": pick(0.5),
        "p90_ms": pick(0.9),
        "p99_ms": pick(0.99),
        "max_ms": pick(1.0),
    }


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def baseline_listener(
    port: int, sample: list[str], lags: list[float], stop: asyncio.Event
) -> None:
    """Receive the sampled nodes' heartbeats straight from the broker; record the latency."""
    async with aiomqtt.Client(
        "127.0.0.1", port, identifier="bench-baseline", username="bench"
    ) as c:
        await c.subscribe([(f"{ROOT}/{n}/heartbeat", 0) for n in sample])
        async for message in c.messages:
            now = time.time()
            if stop.is_set():
                return
            payload = message.payload
            if isinstance(payload, bytes | bytearray):
                lags.append(now - json.loads(payload)["ts"])


async def run_fleet(nodes: int, interval: float, measure: float, workdir: Path) -> dict[str, Any]:
    port = free_port()
    conf = workdir / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 1000000\n"
    )
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    procs: list[subprocess.Popen[bytes]] = []
    broker = spawn([exe, "-c", str(conf)], stderr=subprocess.DEVNULL)
    procs.append(broker)
    wait_port(port)
    db = workdir / "registry.db"
    registry = spawn(
        [
            sys.executable,
            "-c",
            "from fogmesh.registry.cli import main; main()",
            "--port",
            str(port),
            "--db",
            f"sqlite:///{db}",
            "--client-id",
            "registry-bench",
            "--default-interval",
            str(interval),
            "--log-level",
            "warning",
        ],
        stderr=(RESULTS.parent / f"registry-{nodes}.log").open("wb"),
    )
    procs.append(registry)
    prefix = "sim"
    step = max(1, nodes // 1000)
    sample = [f"{prefix}{i:06d}" for i in range(0, nodes, step)]
    base_lags: list[float] = []
    stop = asyncio.Event()
    listener = asyncio.create_task(baseline_listener(port, sample, base_lags, stop))
    await asyncio.sleep(1.0)  # registry and listener connect and subscribe
    until = time.time() + 600
    per = -(-nodes // SIM_PROCS)
    sims = [
        spawn(
            [
                sys.executable,
                __file__,
                "--sim-child",
                str(port),
                prefix,
                str(first),
                str(min(per, nodes - first)),
                str(interval),
                str(until),
            ],
            stdout=subprocess.PIPE,
        )
        for first in range(0, nodes, per)
    ]
    procs += sims
    try:
        t0 = time.monotonic()
        await wait_file(db)
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)

        def query(sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
            for _ in range(50):
                with contextlib.suppress(sqlite3.OperationalError):
                    return conn.execute(sql, args).fetchall()
                time.sleep(0.05)
            return conn.execute(sql, args).fetchall()

        while query("SELECT count(*) FROM nodes WHERE last_seq IS NOT NULL")[0][0] < nodes:
            await asyncio.sleep(0.5)
            if time.monotonic() - t0 > 300:
                raise TimeoutError("the fleet did not join within 300 s")
        join_s = time.monotonic() - t0
        await asyncio.sleep(2 * interval + 1)  # steady state: past the join storm
        marks = ",".join("?" * len(sample))
        sql = f"SELECT node, last_seq, heartbeat_ts FROM nodes WHERE node IN ({marks})"  # noqa: S608
        seen = {n: s for n, s, _ in query(sql, tuple(sample))}
        total0 = query("SELECT sum(last_seq) FROM nodes")[0][0]
        cpu0, base_from = cpu_seconds(registry.pid), len(base_lags)
        w0 = time.monotonic()
        lags: list[float] = []
        while time.monotonic() - w0 < measure:
            await asyncio.sleep(POLL_S)
            now = time.time()
            for node, seq, ts in query(sql, tuple(sample)):
                if seq != seen.get(node):
                    seen[node] = seq
                    lags.append(now - ts)
        window = time.monotonic() - w0
        total1 = query("SELECT sum(last_seq) FROM nodes")[0][0]
        cpu = (cpu_seconds(registry.pid) - cpu0) / window
        not_online = query("SELECT count(*) FROM nodes WHERE state != 'online'")[0][0]
        conn.close()
        return {
            "nodes": nodes,
            "interval_s": interval,
            "offered_rate_per_s": round(nodes / interval, 1),
            "join_s": round(join_s, 1),
            "window_s": round(window, 1),
            "ingest_rate_per_s": round((total1 - total0) / window, 1),
            "registry_cpu_percent": round(cpu * 100, 1),
            "lag": percentiles(lags),
            "baseline": percentiles(base_lags[base_from:]),
            "not_online": not_online,
        }
    finally:
        stop.set()
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
            await listener
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def holds(result: dict[str, Any]) -> bool:
    lag = result["lag"]
    return bool(lag.get("n")) and lag["p99_ms"] < 1000 and result["not_online"] == 0


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    if args.full:
        plan = [
            (10_000, 10.0, 60.0),
            (15_000, 10.0, 30.0),
            (20_000, 10.0, 30.0),
            (30_000, 10.0, 30.0),
        ]
    else:
        plan = [(args.nodes, args.interval, args.measure)]
    runs: list[dict[str, Any]] = []
    for nodes, interval, measure in plan:
        with tempfile.TemporaryDirectory(prefix="fm-bench-registry-") as tmp:
            print(f"fleet of {nodes} nodes, heartbeat every {interval} s ...", flush=True)
            result = await run_fleet(nodes, interval, measure, Path(tmp))
        runs.append(result)
        print(json.dumps(result), flush=True)
        if not holds(result):
            break
    held = [r["nodes"] for r in runs if holds(r)]
    return {
        "bench": "registry-ingest",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "broker": "mosquitto",
        "database": "sqlite (WAL)",
        "goal": "10,000 nodes every 10 s with p99 lag < 1 s",
        "runs": runs,
        "largest_fleet_held": max(held) if held else None,
    }


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--sim-child":
        port, prefix, first, count, interval, until = sys.argv[2:8]
        asyncio.run(
            sim_main(
                int(port),
                prefix,
                int(first),
                int(count),
                interval=float(interval),
                until=float(until),
            )
        )
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--full", action="store_true", help="10,000 nodes, then larger fleets")
    p.add_argument("--nodes", type=int, default=1000)
    p.add_argument("--interval", type=float, default=1.0)
    p.add_argument("--measure", type=float, default=15.0)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    report = asyncio.run(main_async(p.parse_args()))
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"largest fleet held (p99 < 1 s, no flaps): {report['largest_fleet_held']}")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
