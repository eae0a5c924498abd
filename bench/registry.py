"""Registry ingest: how fast heartbeats become queryable rows, against a real Mosquitto.

A simulator (``registry_sim.py``: child processes, several MQTT connections each, many
simulated nodes per connection) publishes real hello / state (retained, QoS 1) and heartbeat
(QoS 0) messages; the registry runs as its own process (``fogmesh-registry``) on SQLite
(WAL), or on PostgreSQL with ``--db URL`` (in a schema of its own, dropped afterwards).
Figures per fleet size:

* ``lag``: time from a heartbeat's publish (its ``ts``) until its row is visible in the
  database, for a sample of nodes, polled every 50 ms (so up to +50 ms pessimistic).
* ``broker_baseline``: the raw broker publish -> subscribe latency of the same sampled
  heartbeats, to a plain subscriber in this process, in the same run.
* ``ingest_per_s``: heartbeats committed per second over the window (all nodes), and the
  registry's CPU use (percent of one core).
* ``join_s``: from the first hello until every node's facts and a heartbeat are stored (the
  join storm: every node says hello and online at once).
* ``live_nodes_not_online``: nodes the registry judged stale or offline at any moment of the
  run (its ``node-stale`` / ``node-lost`` events) or that are not online at the end. Every
  simulated node is alive throughout, so this must be 0.
* ``load_average``: the machine's load (as ``uptime``) before and after, since other work
  shares the cores.

Default (short): 1,000 nodes every 1 s. ``--full``: 10,000 nodes every 10 s, then larger
fleets until p99 lag reaches 1 s (or nodes flap), printing the largest fleet that held.
Simulated nodes share connections, so they leave no per-node last will (not needed here).

With ``--replicas N`` (N > 1) the registries share the fleet (``--share``: Mosquitto gives each
message to one of them) and, after the window, the first is killed (SIGKILL): ``failover_s`` is
the time until every node has a heartbeat stored that was made after the kill (one interval
when nothing fails; Mosquitto notices the dead replica after 1.5 of its keepalives).

``--broker nats`` runs the fleet over the three-member NATS cluster (replicas split it with
``--share-by registry``). Each flap event is kept with the phase of the run it came in (join,
settle, window, failover), the replica that judged it and the silence it judged
(``flaps_by_phase``, ``flap_silent_max_s``), and the flapped nodes' stored heartbeats are
checked for holes after the window (``flapped_with_heartbeats_not_stored``: lost on the way or
left by every replica, rather than stored late); ``joined_more_than_once`` counts the nodes
whose ``node-joined`` came twice.

Run: ``.venv/bin/python bench/registry.py [--nodes N --interval S --measure S] [--db URL]
[--replicas N] [--broker nats]`` (writes
``bench/results/registry-{sqlite|postgresql}[-Nreplicas][-nats].json``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
from _common import RESULTS, load_average, summarise, write_result
from registry_sim import ROOT
from sqlalchemy import Engine, bindparam, make_url, text
from sqlalchemy.exc import SQLAlchemyError

from fogmesh.registry.db import make_engine
from tests.support.brokers import free_port, wait_port
from tests.support.mesh_file import PASSWORDS
from tests.support.nats_cluster import Cluster, nats_cluster, wait_ready

SIMULATOR = Path(__file__).with_name("registry_sim.py")
SIM_PROCS = 2
POLL_S = 0.05
SAMPLE = 300
FLAP_KINDS = ("node-stale", "node-lost")
JOINED = "node-joined"
FLAPS_CHECKED = 500
"""Flapped nodes whose stored heartbeats are checked for holes (``DbProbe.holes``)."""


# -- the processes of one run --------------------------------------------------------------


@dataclass
class Fleet:
    """The broker, the registry and the simulators of one run (stopped in reverse order).

    ``broker``: ``mosquitto`` (one, anonymous) or ``nats`` (the three-member cluster of
    ``tests/support/nats_cluster.py``, rendered by ``fogmesh-broker render-nats``, with the test
    accounts: every client here is ``svc``). On the cluster, replica ``i`` connects to member
    ``i % 3`` and the simulators spread over the members, and replicas split the fleet with
    ``--share-by registry`` (NATS 2.9 has no shared subscriptions)."""

    nodes: int
    interval: float
    db_url: str
    workdir: Path
    port: int = field(default_factory=free_port)
    replicas: int = 1
    broker: str = "mosquitto"
    ports: list[int] = field(default_factory=list)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    registry: subprocess.Popen[bytes] | None = None
    registries: list[subprocess.Popen[bytes]] = field(default_factory=list)
    sims: list[subprocess.Popen[bytes]] = field(default_factory=list)
    cluster: Cluster | None = None
    _stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    @property
    def credentials(self) -> tuple[str, str] | None:
        """The account of every client on the cluster (None: Mosquitto, anonymous)."""
        return ("svc", PASSWORDS["svc"]) if self.broker == "nats" else None

    async def start_broker_and_registry(self) -> None:
        if self.broker == "nats":
            self.cluster = self._stack.enter_context(nats_cluster(self.workdir))
            await wait_ready(self.cluster)
            self.ports = self.cluster.ports
            self.port = self.ports[0]
        else:
            self.start_mosquitto()
        self.start_registries()

    def start_mosquitto(self) -> None:
        conf = self.workdir / "mosquitto.conf"
        # The registry acknowledges a QoS 1 message once it has handled it; Mosquitto's default
        # window of 20 unacknowledged messages per client then bounds a join storm by round
        # trips, which a loaded machine makes long. A cloud broker gives the registry more.
        conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
            "max_queued_messages 1000000\nmax_inflight_messages 1000\n"
        )
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        broker_log = (RESULTS / f"mosquitto-{self.nodes}.log").open("wb")
        self.procs.append(subprocess.Popen([exe, "-c", str(conf)], stderr=broker_log))
        wait_port(self.port)
        self.ports = [self.port]

    def start_registries(self) -> None:
        for i in range(self.replicas):
            log = (RESULTS / f"registry-{self.nodes}-{i}.log").open("wb")
            cid = "registry-bench" if self.replicas == 1 else f"registry-bench-{i}"
            port = self.ports[i % len(self.ports)]
            args = ["--port", str(port), "--db", self.db_url, "--client-id", cid]
            args += ["--default-interval", str(self.interval), "--log-level", "warning"]
            if self.credentials is not None:
                args += ["--username", self.credentials[0], "--password", self.credentials[1]]
            if self.replicas > 1:
                args += ["--share", "registry"]
                if self.broker == "nats":
                    args += ["--share-by", "registry"]
            code = "from fogmesh.registry.cli import main; main()"
            proc = subprocess.Popen([sys.executable, "-c", code, *args], stderr=log)
            self.registries.append(proc)
            self.procs.append(proc)
        self.registry = self.registries[0]

    def start_simulators(self, prefix: str) -> None:
        until = time.time() + 600
        per = -(-self.nodes // SIM_PROCS)
        env = dict(os.environ)
        if self.credentials is not None:
            env["FOGMESH_USERNAME"], env["FOGMESH_PASSWORD"] = self.credentials
        for j, first in enumerate(range(0, self.nodes, per)):
            count = min(per, self.nodes - first)
            port = self.ports[(j + 1) % len(self.ports)]
            argv = [str(port), prefix, str(first), str(count), str(self.interval), str(until)]
            cmd = [sys.executable, str(SIMULATOR), *argv]
            self.sims.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, env=env))
        self.procs += self.sims

    def stop(self) -> float:
        """Stop everything; return how late the simulators' heartbeat wheel ran at worst."""
        for proc in self.sims + list(reversed(self.procs)):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        late = 0.0
        for proc in self.procs:
            try:
                out, _ = proc.communicate(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, _ = proc.communicate()
            if proc in self.sims and out:
                with contextlib.suppress(ValueError, KeyError):
                    late = max(late, json.loads(out.splitlines()[-1])["max_late_s"])
        self._stack.close()  # the cluster's members, last
        return late


# -- what is measured, from the database and from the broker -------------------------------


@dataclass
class DbProbe:
    """Reads the registry's database (sync; called through ``asyncio.to_thread``)."""

    engine: Engine

    def ready(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT count(*) FROM nodes"))
        except SQLAlchemyError:  # the schema is not created yet
            return False
        return True

    def counts(self) -> tuple[int, int, int]:
        """(nodes with facts and a heartbeat, nodes not online, sum of last seqs)."""
        sql = text(
            "SELECT COALESCE(SUM(CASE WHEN last_seq IS NOT NULL AND facts IS NOT NULL"
            " THEN 1 ELSE 0 END), 0), COALESCE(SUM(CASE WHEN state <> 'online' THEN 1 ELSE 0"
            " END), 0), COALESCE(SUM(last_seq), 0) FROM nodes"
        )
        with self.engine.connect() as conn:
            row = conn.execute(sql).one()
        return int(row[0]), int(row[1]), int(row[2])

    def beat_since(self, t: float) -> int:
        """Nodes with a heartbeat made after the unix time ``t`` stored."""
        sql = text("SELECT count(*) FROM nodes WHERE heartbeat_ts > :t")
        with self.engine.connect() as conn:
            return int(conn.execute(sql, {"t": t}).scalar() or 0)

    def holes(self, nodes: list[str]) -> dict[str, list[int]]:
        """Of ``nodes``, those whose stored usage history (the last ``--history`` heartbeats)
        lacks a sequence number between its lowest and highest: heartbeats never stored (lost
        on the way, or left by every replica), as opposed to stored late."""
        if not nodes:
            return {}
        sql = text("SELECT node, seq FROM usage_history WHERE node IN :nodes")
        sql = sql.bindparams(bindparam("nodes", expanding=True))
        seqs: dict[str, set[int]] = {}
        with self.engine.connect() as conn:
            for node, seq in conn.execute(sql, {"nodes": nodes}):
                seqs.setdefault(node, set()).add(int(seq))
        missing = {n: sorted(set(range(min(s), max(s) + 1)) - s) for n, s in seqs.items()}
        return {n: m for n, m in missing.items() if m}

    def seqs(self, sample: list[str]) -> list[tuple[str, int | None, float | None]]:
        sql = text("SELECT node, last_seq, heartbeat_ts FROM nodes WHERE node IN :nodes")
        sql = sql.bindparams(bindparam("nodes", expanding=True))
        with self.engine.connect() as conn:
            return [(r[0], r[1], r[2]) for r in conn.execute(sql, {"nodes": sample})]


@dataclass
class BusProbe:
    """One plain MQTT subscriber: the sample's heartbeats (the baseline), flap events (each
    with the phase of the run it came in, the replica that judged and the silence it judged)
    and joins (a node joined more than once was taken by two replicas)."""

    port: int
    sample: list[str]
    credentials: tuple[str, str] | None = None
    baseline: list[float] = field(default_factory=list)
    flapped: set[str] = field(default_factory=set)
    phase: str = "start"
    """Set by :func:`measure`: join, settle, window, failover."""
    flaps: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    """(phase, source, kind) of each flap event."""
    silent_max_s: float = 0.0
    joins: Counter[str] = field(default_factory=Counter)

    def flap_summary(self) -> dict[str, Any]:
        """The flaps by phase, replica and kind; the longest silence judged; the nodes joined
        more than once."""
        by: dict[str, dict[str, int]] = {}
        for (phase, source, kind), n in sorted(self.flaps.items()):
            by.setdefault(phase, {})[f"{source} {kind}"] = n
        return {
            "flaps_by_phase": by,
            "flap_silent_max_s": round(self.silent_max_s, 1),
            "joined_more_than_once": sum(1 for n in self.joins.values() if n > 1),
        }

    async def run(self, subscribed: asyncio.Event) -> None:
        user, password = self.credentials or (None, None)
        async with aiomqtt.Client(
            "127.0.0.1", self.port, identifier="bench-probe", username=user, password=password
        ) as client:
            filters = [(f"{ROOT}/{n}/heartbeat", 0) for n in self.sample]
            filters += [(f"fm/v1/events/fleet/{kind}", 1) for kind in (*FLAP_KINDS, JOINED)]
            await client.subscribe(filters)
            subscribed.set()
            async for message in client.messages:
                now = time.time()
                payload = message.payload
                if not isinstance(payload, bytes | bytearray):
                    continue
                data = json.loads(payload)
                if message.topic.matches(f"{ROOT}/+/heartbeat"):
                    self.baseline.append(now - data["ts"])
                elif data.get("kind") == JOINED:
                    self.joins[data.get("node") or "?"] += 1
                else:
                    self.flapped.add(data.get("node") or "?")
                    key = (self.phase, str(data.get("source")), str(data.get("kind")))
                    self.flaps[key] += 1
                    silent = (data.get("data") or {}).get("silent_s") or 0.0
                    self.silent_max_s = max(self.silent_max_s, float(silent))


async def poll(probe: DbProbe, what: str, done: Any, timeout: float) -> float:
    """Poll ``done(probe)`` (in a thread) every 0.5 s; return the seconds it took."""
    t0 = time.monotonic()
    while not await asyncio.to_thread(done, probe):
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(f"{what} not within {timeout:.0f} s")
        await asyncio.sleep(0.5)
    return time.monotonic() - t0


async def join(probe: DbProbe, nodes: int, *, timeout: float) -> float | None:
    """Seconds until every node's facts and a heartbeat are stored (None: not in time; the
    run is measured anyway, as it stands)."""
    try:
        return await poll(probe, "the join", lambda p: p.counts()[0] >= nodes, timeout)
    except TimeoutError:
        joined = (await asyncio.to_thread(probe.counts))[0]
        print(f"only {joined} of {nodes} nodes joined within {timeout:.0f} s", flush=True)
        return None


async def lag_window(probe: DbProbe, sample: list[str], seconds: float) -> list[float]:
    """Each sampled node's heartbeats: publish time to visible in the database."""
    seen = {n: s for n, s, _ in await asyncio.to_thread(probe.seqs, sample)}
    lags: list[float] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        await asyncio.sleep(POLL_S)
        now = time.time()  # visible rows were committed before the query began
        for node, seq, ts in await asyncio.to_thread(probe.seqs, sample):
            if seq != seen.get(node) and ts is not None:
                seen[node] = seq
                lags.append(now - ts)
    return lags


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure(fleet: Fleet, probe: DbProbe, measure_s: float) -> dict[str, Any]:
    """Join the fleet, let it settle, then measure for ``measure_s`` seconds."""
    assert fleet.registry is not None
    step = max(1, fleet.nodes // SAMPLE)
    sample = [f"sim{i:06d}" for i in range(0, fleet.nodes, step)]
    bus = BusProbe(fleet.port, sample, fleet.credentials)
    subscribed = asyncio.Event()
    listener = asyncio.create_task(bus.run(subscribed))
    try:
        await poll(probe, "the registry's schema", DbProbe.ready, 60)
        async with asyncio.timeout(15):
            await subscribed.wait()
        bus.phase = "join"
        fleet.start_simulators("sim")
        join_s = await join(probe, fleet.nodes, timeout=180)
        bus.phase = "settle"
        await asyncio.sleep(2 * fleet.interval + 1)  # steady state: past the join storm
        bus.phase = "window"
        _, _, total0 = await asyncio.to_thread(probe.counts)
        pids = [r.pid for r in fleet.registries]
        cpu0, base0, w0 = sum(map(cpu_seconds, pids)), len(bus.baseline), time.monotonic()
        lags = await lag_window(probe, sample, measure_s)
        window = time.monotonic() - w0
        cpu = (sum(map(cpu_seconds, pids)) - cpu0) / window
        _, not_online, total1 = await asyncio.to_thread(probe.counts)
        baseline = bus.baseline[base0:]
        flapped = sorted(bus.flapped)[:FLAPS_CHECKED]
        holes = await asyncio.to_thread(probe.holes, flapped)
        bus.phase = "failover"
        failover = await kill_a_replica(fleet, probe) if fleet.replicas > 1 else None
        if failover is not None:
            _, not_online, _ = await asyncio.to_thread(probe.counts)
    finally:
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
            await listener
    return {
        "join_s": None if join_s is None else round(join_s, 1),
        "window_s": round(window, 1),
        "ingest_per_s": round((total1 - total0) / window, 1),
        "registry_cpu_percent": round(cpu * 100, 1),
        "lag": summarise(lags) if lags else {"n": 0},
        "broker_baseline": summarise(baseline) if baseline else {"n": 0},
        "not_online_at_end": not_online,
        "flapped": len(bus.flapped),
        **bus.flap_summary(),
        "flapped_checked": len(flapped),
        "flapped_with_heartbeats_not_stored": len(holes),
        "heartbeats_not_stored_of_flapped": sum(len(m) for m in holes.values()),
        "replicas": fleet.replicas,
        "failover_s": failover,
    }


async def kill_a_replica(fleet: Fleet, probe: DbProbe) -> float | None:
    """SIGKILL the first replica; seconds until every node has a heartbeat stored that was
    made after the kill (a healthy fleet needs one interval for that: each node's next beat).
    None, with how many made it, when not every node did within 120 s."""
    victim = fleet.registries[0]
    killed_at = time.time()
    victim.kill()
    victim.wait()
    try:
        took = await poll(
            probe, "every node's heartbeat after the kill",
            lambda p: p.beat_since(killed_at) >= fleet.nodes, timeout=120,
        )  # fmt: skip
    except TimeoutError:
        covered = await asyncio.to_thread(probe.beat_since, killed_at)
        print(f"failover: {covered} of {fleet.nodes} nodes stored again within 120 s", flush=True)
        return None
    return round(took, 1)


# -- one run, several runs, the report -----------------------------------------------------


@contextlib.contextmanager
def database(url: str | None, workdir: Path) -> Iterator[str]:
    """A fresh SQLite file, or a fresh schema in the PostgreSQL at ``url`` (dropped after)."""
    if url is None:
        yield f"sqlite:///{workdir}/registry.db"
        return
    schema = f"bench_registry_{int(time.time())}"
    admin = make_engine(url)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        scoped = make_url(url).update_query_dict({"options": f"-csearch_path={schema}"})
        yield scoped.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def flat(nodes: int, interval: float, db: str, m: dict[str, Any]) -> dict[str, Any]:
    """The run's record: the figures compared before / after, flat, then the details."""
    lag, base = m["lag"], m["broker_baseline"]
    return {
        "nodes": nodes,
        "interval_s": interval,
        "db": db,
        "offered_per_s": round(nodes / interval, 1),
        "ingest_per_s": m["ingest_per_s"],
        "lag_p50_ms": lag.get("p50_ms"),
        "lag_p99_ms": lag.get("p99_ms"),
        "live_nodes_not_online": max(m["flapped"], m["not_online_at_end"]),
        "broker_baseline_p50_ms": base.get("p50_ms"),
        "broker_baseline_p99_ms": base.get("p99_ms"),
        **m,
    }


async def run_fleet(
    nodes: int,
    interval: float,
    measure_s: float,
    db_url: str | None,
    *,
    replicas: int = 1,
    broker: str = "mosquitto",
) -> dict[str, Any]:
    db = "sqlite" if db_url is None else "postgresql"
    load_before = load_average()
    with (
        tempfile.TemporaryDirectory(prefix="fm-bench-registry-") as tmp,
        database(db_url, Path(tmp)) as url,
    ):
        fleet = Fleet(nodes, interval, url, Path(tmp), replicas=replicas, broker=broker)
        probe = DbProbe(make_engine(url))
        try:
            await fleet.start_broker_and_registry()
            result = await measure(fleet, probe, measure_s)
        finally:
            sim_late = fleet.stop()
            probe.engine.dispose()
    record = flat(nodes, interval, db, result)
    record["sim_max_late_s"] = round(sim_late, 3)
    record["broker"] = broker
    record["load_average"] = {"before": load_before, "after": load_average()}
    return record


def holds(result: dict[str, Any]) -> bool:
    p99 = result["lag_p99_ms"]
    return p99 is not None and p99 < 1000 and result["live_nodes_not_online"] == 0


def table(r: dict[str, Any]) -> str:
    """The run beside its baselines, for people."""
    rows = [
        ("fleet", f"{r['nodes']} nodes every {r['interval_s']} s on {r['db']}"),
        ("join (hello storm -> all stored)", f"{r['join_s']} s"),
        ("ingest / offered", f"{r['ingest_per_s']} / {r['offered_per_s']} heartbeats/s"),
        ("registry CPU", f"{r['registry_cpu_percent']}% of one core"),
        ("lag p50 / p99 (into the database)", f"{r['lag_p50_ms']} / {r['lag_p99_ms']} ms"),
        (
            "  broker baseline p50 / p99",
            f"{r['broker_baseline_p50_ms']} / {r['broker_baseline_p99_ms']} ms",
        ),
        ("live nodes ever not online", str(r["live_nodes_not_online"])),
        ("  flaps by phase (replica kind: n)", json.dumps(r.get("flaps_by_phase", {}))),
        ("  longest silence judged", f"{r.get('flap_silent_max_s')} s"),
        (
            "  flapped with heartbeats not stored",
            f"{r.get('flapped_with_heartbeats_not_stored')} of {r.get('flapped_checked')}"
            f" ({r.get('heartbeats_not_stored_of_flapped')} heartbeats)",
        ),
        ("nodes joined more than once", str(r.get("joined_more_than_once"))),
        ("registry replicas / failover", f"{r['replicas']} / {r['failover_s']} s"),
        ("simulator wheel late at worst", f"{r['sim_max_late_s']} s"),
        ("load average before / after", "{before} / {after}".format(**r["load_average"])),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    plan = [(args.nodes, args.interval, args.measure)]
    if args.full:
        plan = [(10_000, 10.0, 60.0), (15_000, 10.0, 30.0), (20_000, 10.0, 30.0)]
        plan.append((30_000, 10.0, 30.0))
    runs: list[dict[str, Any]] = []
    for nodes, interval, measure_s in plan:
        print(f"fleet of {nodes} nodes, heartbeat every {interval} s ...", flush=True)
        result = await run_fleet(
            nodes, interval, measure_s, args.db, replicas=args.replicas, broker=args.broker
        )
        runs.append(result)
        print(table(result), flush=True)
        if not holds(result):
            break
    held = [r["nodes"] for r in runs if holds(r)]
    return {
        "broker": args.broker,
        "db": "sqlite" if args.db is None else "postgresql",
        "goal": "10,000 nodes every 10 s with p99 lag < 1 s and no live node stale or offline",
        "runs": runs,
        "largest_fleet_held": max(held) if held else None,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--full", action="store_true", help="10,000 nodes, then larger fleets")
    p.add_argument("--nodes", type=int, default=1000)
    p.add_argument("--interval", type=float, default=1.0)
    p.add_argument("--measure", type=float, default=15.0)
    p.add_argument("--db", default=None, help="a PostgreSQL URL (default: a SQLite file)")
    p.add_argument(
        "--replicas",
        type=int,
        default=1,
        help="registries sharing the fleet ($share); >1: the first is killed after the window",
    )
    p.add_argument(
        "--broker",
        choices=("mosquitto", "nats"),
        default="mosquitto",
        help="nats: the three-member cluster, replicas with --share-by registry",
    )
    args = p.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    report = asyncio.run(main_async(args))
    suffix = "" if args.replicas == 1 else f"-{args.replicas}replicas"
    suffix += "" if args.broker == "mosquitto" else f"-{args.broker}"
    path = write_result(f"registry-{report['db']}{suffix}", report)
    print(f"largest fleet held (p99 < 1 s, no flaps): {report['largest_fleet_held']}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
