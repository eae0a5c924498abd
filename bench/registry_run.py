"""One run of the registry bench: a fresh database, the fleet started, joined, measured
(:func:`measure`, with the failover of :func:`kill_a_replica` when there are replicas) and
stopped, its record made (:func:`run_fleet`)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiomqtt
from _common import load_average, summarise
from registry_fleet import Fleet
from registry_probes import BusProbe, DbProbe, join, lag_window, poll
from registry_report import flat
from sqlalchemy import make_url, text

from fogmesh.registry.db import make_engine

__all__ = [
    "FLAPS_CHECKED",
    "SAMPLE",
    "cpu_seconds",
    "database",
    "kill_a_replica",
    "measure",
    "run_fleet",
]

SAMPLE = 300
FLAPS_CHECKED = 500
"""Flapped nodes whose stored heartbeats are checked for holes (``DbProbe.holes``)."""


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
