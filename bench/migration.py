"""Migration timings on one machine: real agents (native runtime) as processes, Mosquitto, the
scheduler and the migrator (``python bench/migration.py [--sizes 0,1,10] [--rounds 2]``).

Measured, each in the same run as its baseline:

* ``freeze_s`` per state size in MB: a planned move by hand (``migrations/migrate``), from the
  source's freeze to the workload running on the peer with its state (the migrator's own
  figure, in ``migration-finished``). Baseline ``cold_move_s``: the same workload re-homed by
  the scheduler without its state (``apps/move``: a plain stop and a fresh start elsewhere),
  from the request to running on the peer.
* ``loud_death_to_running_s`` (``kill -9`` of the agent: its last will) and
  ``silent_death_to_running_s`` (``SIGSTOP``: missed heartbeats): to running on a peer. Both
  are the scheduler's cold re-placement today (the migrator does not move a dead node's
  workloads); the baseline is the same path, so they are printed once.

* ``readings_sent``, ``readings_lost``, ``readings_duplicated``: the sample app's convolver (a
  native workload) while a sensor (a process of the bench) publishes at 10 Hz, moved once by
  hand and then its node killed (agent and workload processes: ``kill -9``); counted from the
  first output on ``out`` (the convolver's session exists from there on) to the last reading.

* ``replica_age_s`` at death (unplanned, stateful): a ``migration: stateful`` counter (its state
  replicated every ``replica_interval_s``, 5 s by default) whose node is killed (agent and
  workload); the age the migrator reports on the failover's ``migration-finished``, and
  ``replica_death_to_running_s``. Baseline: a cold re-placement, whose counter starts from 0.
  ``--cases unplanned`` runs only this case and merges its keys into an existing result file.

Results go to ``bench/results/migration.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

from _common import REPO, load_average, read_result, write_result

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from fogmesh.protocol import topics
from fogmesh.protocol.apps import AppAction
from fogmesh.protocol.events import EventKind, MigrationData
from fogmesh.protocol.migration import (
    MigrateWorkload,
    MigrationAction,
    MoveReply,
    MoveWorkload,
    StageOutcome,
)
from tests.agent.support import remove_native, wait_for
from tests.migrator.support import TENANT, Stack, stack, state_file
from tests.migrator.test_replica import COUNTER
from tests.sample_app.helpers import USERNAME, AppProcess, Collector, Names, app_env, running

NODES = ["b-a", "b-b", "b-c"]


def _script(mb: int) -> str:
    """Writes ``mb`` MB of state once (a restored copy keeps it), then idles."""
    return (
        'S="$FOGMESH_STATE_DIR"; mkdir -p "$S"; if [ ! -f "$S/done" ]; then '
        f'dd if=/dev/urandom of="$S/blob" bs=1048576 count={mb} 2>/dev/null; touch "$S/done"; fi; '
        "trap 'exit 0' TERM; while true; do sleep 0.2; done"
    )


def _stats(samples: list[float]) -> dict[str, float] | None:
    if not samples:
        return None
    return {"p50": round(statistics.median(samples), 4), "max": round(max(samples), 4)}


def _finished_more_than(st: Stack, count: int) -> bool:
    return len(st.kinds(EventKind.MIGRATION_FINISHED)) > count


def _only_on(st: Stack, workload: str, node: str) -> bool:
    return st.where(workload) == [node]


def _node(st: Stack, workload: str) -> str:
    for _app, p in st.scheduler.store.placements():
        if p.name == workload and p.node is not None:
            return p.node
    raise RuntimeError(f"{workload} is not placed")


async def _planned(
    st: Stack, mb: int, rounds: int
) -> tuple[list[float], list[float], dict[str, list[float]]]:
    name = f"s{mb}mb"
    workload = (await st.deploy(name, command=["-c", _script(mb)])).app.placements[0].workload
    await wait_for(lambda: bool(st.where(workload)), 120, "running")
    freezes, colds = [], []
    stages: dict[str, list[float]] = {}
    for _ in range(rounds):
        source = _node(st, workload)
        before = len(st.kinds(EventKind.MIGRATION_FINISHED))
        answer = await st.ask(MigrationAction.MIGRATE, MigrateWorkload(workload=workload))
        if answer.outcomes.get(workload) is not StageOutcome.MOVED:
            raise RuntimeError(f"move failed: {answer.reasons}")
        await wait_for(partial(_finished_more_than, st, before), 60, "the finished event")
        data = st.kinds(EventKind.MIGRATION_FINISHED)[-1].payload_as(MigrationData)
        freezes.append(data.freeze_s or 0.0)
        for stage, took in data.stages_s.items():
            stages.setdefault(stage, []).append(took)
        # baseline: the scheduler re-homes it cold (stop here, fresh start there)
        peer = next(n for n in NODES if n not in (source, _node(st, workload)))
        t0 = time.monotonic()
        move = MoveWorkload(workload=workload, to=peer, tenant=TENANT)
        topic = topics.ops("scheduler", AppAction.MOVE)
        await st.bus.request(topic, move, MoveReply, timeout=30)
        await wait_for(partial(_only_on, st, workload, peer), 120, "cold move done")
        colds.append(time.monotonic() - t0)
    return freezes, colds, stages


async def _death(st: Stack, workload: str, how: str) -> float:
    node = _node(st, workload)
    agent = st.agents[node]
    await wait_for(lambda: st.runs(node, workload), 120, "running before the death")
    t0 = time.monotonic()
    if how == "loud":
        agent.kill()
    else:
        assert agent.proc is not None
        agent.proc.send_signal(signal.SIGSTOP)
    others = [n for n in NODES if n != node]
    await wait_for(lambda: any(st.runs(n, workload) for n in others), 120, "on a peer")
    took = time.monotonic() - t0
    if how == "silent":
        assert agent.proc is not None
        agent.proc.send_signal(signal.SIGCONT)
        agent.kill()
    st.beats.pop(node, None)
    agent.start()  # the node comes back for the next round (its old copy is removed)
    await wait_for(lambda: node in st.migrator.fleet.live(), 120, "back")
    return took


async def _kill_node(st: Stack, node: str) -> None:
    """``kill -9`` of a node's agent and of its workloads' processes (the whole node dies)."""
    agent = st.agents[node]
    agent.kill()
    await remove_native([agent])


async def _readings(st: Stack, tmp: Path, count: int = 300) -> dict[str, int]:
    """Readings through a convolver moved by hand, then re-placed after its node's death."""
    app = "pipe"
    workload = f"{app}-convolve-0"
    env = app_env(st.broker, TENANT, app)
    await st.deploy(
        app, name="convolve", executable=sys.executable,
        command=["-m", "fogmesh_sample.convolve"], inputs=["in"], outputs=["out"],
        env={k: v for k, v in env.items() if k != "FM_PASSWORD"},
        requests={"cpu": "50m", "memory": "32Mi"},
    )  # fmt: skip
    await wait_for(lambda: bool(st.where(workload)), 120, "the convolver runs")
    sensor = AppProcess(
        "sensor",
        {**env, "FM_CLIENT_ID": f"{USERNAME}-bench-sensor", "FM_RATE_HZ": "10"},
        tmp / "sensor.log",
        args=("--count", str(count), "--seed", "3"),
    )
    with Collector(st.broker, Names(tenant=TENANT, app=app)) as collector, running(sensor):
        await wait_for(lambda: bool(collector.seqs_out()), 120, "the first output")
        first = min(collector.seqs_out())
        answer = await st.ask(MigrationAction.MIGRATE, MigrateWorkload(workload=workload))
        if answer.outcomes.get(workload) is not StageOutcome.MOVED:
            raise RuntimeError(f"move failed: {answer.reasons}")
        node = _node(st, workload)
        await wait_for(lambda: st.runs(node, workload), 120, "running after the move")
        await _kill_node(st, node)
        others = [n for n in NODES if n != node]
        await wait_for(lambda: any(st.runs(n, workload) for n in others), 120, "re-placed")
        await asyncio.to_thread(sensor.wait, 600)
        want = set(range(first, count))
        with contextlib.suppress(AssertionError):  # what is still missing then is lost
            await wait_for(lambda: collector.seqs_out() >= want, 120, "every reading")
        await asyncio.sleep(2.0)  # late duplicates
        with collector.lock:
            seen = {seq for seq in collector.outputs if seq >= first}
            duplicated = collector.output_count - len(collector.outputs)
    st.agents[node].start()  # the node comes back
    return {
        "readings_sent": len(want),
        "readings_lost": len(want - seen),
        "readings_duplicated": duplicated,
    }


def _failovers(st: Stack) -> list[MigrationData]:
    finished = (e.payload_as(MigrationData) for e in st.kinds(EventKind.MIGRATION_FINISHED))
    return [d for d in finished if d.trigger == "node-lost"]


async def _replica_round(st: Stack, workload: str) -> tuple[float, float, bool]:
    """One death: (the replica's age at death, death to running, the counter went on)."""
    key = f"{TENANT}/{workload}"
    replicator = st.migrator.replicator
    assert replicator is not None
    node = _node(st, workload)
    await wait_for(lambda: st.runs(node, workload), 120, "running before the death")
    await wait_for(
        lambda: (r := replicator.replicas.get(key)) is not None and r.source == node,
        120, "a replica",
    )  # fmt: skip
    await asyncio.sleep(3.0)  # the counter goes on past the replica
    before = len(_failovers(st))
    t0 = time.monotonic()
    await _kill_node(st, node)
    others = [n for n in NODES if n != node]
    await wait_for(lambda: any(st.runs(n, workload) for n in others), 120, "on a peer")
    took = time.monotonic() - t0
    await wait_for(lambda: len(_failovers(st)) > before, 60, "the failover's event")
    age = _failovers(st)[-1].replica_age_s or 0.0
    peer = next(n for n in others if st.runs(n, workload))
    began = state_file(st.agents[peer], "began")
    kept = began is not None and int(began.read_text()) > 0
    st.beats.pop(node, None)
    st.agents[node].start()  # the node comes back for the next round
    await wait_for(lambda: node in st.migrator.fleet.live(), 120, "back")
    return age, took, kept


async def _replica(st: Stack, rounds: int) -> dict[str, Any]:
    """A stateful counter's node killed ``rounds`` times: the replica's age at death, the time
    to running again, and whether the counter went on from the replica (not from 0)."""
    workload = (
        await st.deploy(
            "counts", command=["-c", COUNTER], migration="stateful",
            requests={"cpu": "50m", "memory": "128Mi"},
        )
    ).app.placements[0].workload  # fmt: skip
    ages, took, kept = [], [], []
    for _ in range(rounds):
        age, secs, ok = await _replica_round(st, workload)
        ages.append(age)
        took.append(secs)
        kept.append(ok)
    return {
        "replica_age_s": _stats(ages),
        "replica_death_to_running_s": _stats(took),
        "replica_kept": all(kept),
        "replica_path": "replica_interval_s 5 (default); kill -9 of the node (agent and "
        "workload); baseline: a cold re-placement starts the counter from 0",
    }


async def run_unplanned(rounds: int) -> dict[str, Any]:
    """Only the unplanned, stateful case."""
    with tempfile.TemporaryDirectory(prefix="fm-bench-mig-") as tmp:
        async with stack(Path(tmp), "fmtest=bench-migration", NODES) as st:
            return {**await _replica(st, rounds), "load_average_after": load_average()}


async def run(sizes: list[int], rounds: int) -> dict[str, Any]:
    """Every measurement on one fleet."""
    with tempfile.TemporaryDirectory(prefix="fm-bench-mig-") as tmp:
        # overload stays off (the stack's default): a loaded bench machine would shed workloads.
        # The death rounds kill each node in turn on purpose; the guard against moving onto a
        # node lost in the last minutes (failed_node_avoid_s) would then refuse the readings'
        # move by hand whenever every node had been killed once, so it is off here.
        async with stack(Path(tmp), "fmtest=bench-migration", NODES, failed_node_avoid_s=0.0) as st:
            freeze: dict[str, Any] = {}
            cold: dict[str, Any] = {}
            stages: dict[str, Any] = {}
            for mb in sizes:
                f, c, parts = await _planned(st, mb, rounds)
                freeze[str(mb)], cold[str(mb)] = _stats(f), _stats(c)
                stages[str(mb)] = {k: _stats(v) for k, v in parts.items()}
                print(f"  {mb:>4} MB: freeze {freeze[str(mb)]}  cold move {cold[str(mb)]}")
                print(f"          stages {stages[str(mb)]}")
            workload = (await st.deploy("dies")).app.placements[0].workload
            loud = [await _death(st, workload, "loud") for _ in range(rounds)]
            silent = [await _death(st, workload, "silent") for _ in range(rounds)]
            readings = await _readings(st, Path(tmp))
            print(f"  readings: {readings}")
            replica = await _replica(st, rounds)
    return {
        "freeze_s": freeze,
        "stages_s": stages,
        "baseline": {"cold_move_s": cold, "what": "apps/move without state: stop, fresh start"},
        "loud_death_to_running_s": _stats(loud),
        "silent_death_to_running_s": _stats(silent),
        "death_path": "the scheduler's cold re-placement (heartbeat 1 s, lost after 3 missed)",
        **replica,
        **readings,
        "readings_path": "a move by hand, then kill -9 of the node (agent and workload)",
        "rounds": rounds,
        "load_average_after": load_average(),
    }


def main() -> None:
    """Run, print a table, write bench/results/migration.json."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="0,1,10", help="state sizes in MB (e.g. 0,1,10,100)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--cases", choices=("all", "unplanned"), default="all")
    args = parser.parse_args()
    if args.cases == "unplanned":
        found = asyncio.run(run_unplanned(args.rounds))
        for key, value in found.items():
            print(f"{key:<28} {value}")
        print(f"written to {write_result('migration', {**read_result('migration'), **found})}")
        return
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    result = asyncio.run(run(sizes, args.rounds))
    print(f"{'key':<28} value")
    keys = ("freeze_s", "loud_death_to_running_s", "silent_death_to_running_s", "replica_age_s")
    for key in (*keys, "readings_sent", "readings_lost", "readings_duplicated"):
        print(f"{key:<28} {result[key]}")
    print(f"{'baseline cold_move_s':<28} {result['baseline']['cold_move_s']}")
    print(f"written to {write_result('migration', result)}")


if __name__ == "__main__":
    main()
