"""Nothing acknowledged is lost while things fail at random (issue "Nothing acknowledged is lost").

The sample app (``fogmesh up``'s manifest, native sensor and convolver) runs on a fleet of three
brokers joined by WAN links, the registry, the scheduler and three agents, each a real process.
One site (its broker and agents) runs in a network namespace behind a WAN link that the chaos
cuts silently and heals (:mod:`tests.chaos.wan`; without root and ``ip netns`` the run has no
cuts, and with ``CI=true`` it fails instead). For ``FOGMESH_CHAOS_MINUTES`` (default 2) faults
are injected at random times from a seeded RNG
(``FOGMESH_CHAOS_SEED``, printed; see :mod:`tests.chaos.faults`). Then every reading the sensor's
broker acknowledged must reach ``out`` (repeats allowed), the app must still run, every node be
online in the registry and the registry's workloads be what the agents run. The figures go to
``bench/results/chaos.json`` (see :mod:`tests.chaos.results`).
"""

from __future__ import annotations

import asyncio
import os
import random
import secrets
import time
from pathlib import Path

import pytest

from fogmesh.bus import Bus
from fogmesh.cli.fleet.live import FleetView
from fogmesh.cli.fleet.plan import APP, TENANT
from tests.chaos.checks import eventually, unsettled
from tests.chaos.faults import Chaos
from tests.chaos.fleet import ChaosFleet, snapshot_code
from tests.chaos.ledger import Ledger, OutRecorder, Reading, acknowledged, watch_acknowledged
from tests.chaos.results import write_results
from tests.chaos.wan import wan_split
from tests.support.mqtt import wait_for

SEED = int(os.environ.get("FOGMESH_CHAOS_SEED") or secrets.randbits(32))
MINUTES = float(os.environ.get("FOGMESH_CHAOS_MINUTES") or 2)


@pytest.mark.timeout(int(MINUTES * 60) + 900)
async def test_nothing_acknowledged_is_lost_under_chaos(tmp_path: Path) -> None:
    print(f"chaos: FOGMESH_CHAOS_SEED={SEED} FOGMESH_CHAOS_MINUTES={MINUTES:g}")
    with wan_split() as wan:  # the namespaces go last, also when the test fails
        if wan is None:
            print("chaos: no network namespaces here: no WAN cuts in this run")
        code = snapshot_code(tmp_path / "code")
        await _run_chaos(tmp_path, ChaosFleet(tmp_path / "fleet", wan=wan, pythonpath=code))


async def _run_chaos(tmp_path: Path, fleet: ChaosFleet) -> None:
    recorder, view = OutRecorder(), FleetView(TENANT, APP)
    chaos: Chaos | None = None
    try:
        await asyncio.to_thread(fleet.start_all)
        async with (
            Bus(fleet.bus_config("operator-chaos-out", persistent=True)) as out_bus,
            Bus(fleet.bus_config("operator-chaos-view")) as bus,
        ):
            recorder.attach(out_bus)
            view.attach(bus)
            await out_bus.wait_connected(timeout=60)
            await bus.wait_connected(timeout=60)
            nodes = {n.node for n in fleet.plan.nodes}
            await wait_for(lambda: nodes <= view.online(), 180, "every node online")
            await fleet.deploy_sample(bus)
            await wait_for(lambda: bool(recorder.arrivals), 180, "the first output on out")

            acked: set[Reading] = set()
            watcher = asyncio.create_task(watch_acknowledged(fleet.root / "agents", acked))
            chaos = Chaos(fleet, view, random.Random(SEED))
            began = time.monotonic()
            await chaos.run(MINUTES * 60)
            ended = time.monotonic()

            # The figures are written whatever the end-of-run proofs find (a long run's are
            # worth having); the proofs are asserted after that.
            unsettled_why = ""
            try:
                await eventually(lambda: unsettled(fleet, bus, view), 240, "the fleet after chaos")
                before = len(recorder.arrivals)
                await wait_for(lambda: len(recorder.arrivals) > before + 3, 120, "new outputs")
            except AssertionError as exc:
                unsettled_why = str(exc)
            watcher.cancel()
            acked |= acknowledged(fleet.root / "agents")
            sent = {r for r in acked if r[1] >= recorder.whole_since}

            async def missing() -> str | None:
                lost = Ledger(sent, recorder.readings).lost
                return f"{len(lost)} readings not on out, first {lost[:5]}" if lost else None

            # Readings still queued somewhere get a generous time to arrive; a loss stays one.
            timed_out = ""
            try:
                await eventually(missing, 120, "acknowledged readings on out")
            except AssertionError as exc:
                timed_out = str(exc)
            ledger = Ledger(sent, recorder.readings)
            write_results(
                seed=SEED,
                minutes=MINUTES,
                faults=chaos.faults,
                ledger=ledger,
                max_output_gap_s=recorder.max_gap(began, ended),
                out=tmp_path / "chaos.json",
                wan_cuts=chaos.cuts,
                unsettled=unsettled_why,
            )
            assert not unsettled_why, unsettled_why
            assert sent, "the sensor logged no acknowledged reading"
            assert not timed_out, timed_out
    except AssertionError as exc:
        journal = "\n".join(chaos.journal) if chaos else ""
        raise AssertionError(
            f"{exc}\nseed {SEED}; faults:\n{journal}\nfleet files: {fleet.root}\n{fleet.logs()}"
        ) from None
    finally:
        recorder.dump(tmp_path / "out.jsonl")
        (tmp_path / "journal.txt").write_text("\n".join(chaos.journal if chaos else []) + "\n")
        await asyncio.to_thread(fleet.stop)
