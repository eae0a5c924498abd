"""A whole-machine restart: every fogmesh process SIGKILLed at once and started again on the same
state directories (issue "Nothing acknowledged is lost", item 3).

Before the kill, messages are left queued on purpose: the convolver is SIGSTOPped (readings queue
for its persistent session on its site broker) and the cloud subscriber of ``out`` has gone away
(outputs queue for its session on the cloud broker). Then the brokers, the registry, the
scheduler, the agents, the workloads and their shims are SIGKILLed together and started again.
Every workload must come back, every node be online, and every reading the sensor's broker
acknowledged, before the kill or after, reach ``out``.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from fogmesh.bus import Bus
from fogmesh.cli.fleet.live import FleetView
from fogmesh.cli.fleet.plan import APP, TENANT
from tests.chaos.checks import eventually, unsettled
from tests.chaos.fleet import ChaosFleet, running_pids
from tests.chaos.ledger import Ledger, OutRecorder, acknowledged
from tests.support.mqtt import wait_for

OUT_CLIENT = "operator-restart-out"


@pytest.mark.timeout(900)
async def test_whole_machine_restart_loses_nothing(tmp_path: Path) -> None:
    fleet = ChaosFleet(tmp_path / "fleet")
    recorder = OutRecorder()
    try:
        await asyncio.to_thread(fleet.start_all)
        view = FleetView(TENANT, APP)
        async with Bus(fleet.bus_config("operator-restart-view")) as bus:
            view.attach(bus)
            await bus.wait_connected(timeout=60)
            nodes = {n.node for n in fleet.plan.nodes}
            await wait_for(lambda: nodes <= view.online(), 180, "every node online")
            async with Bus(fleet.bus_config(OUT_CLIENT, persistent=True)) as out_bus:
                recorder.attach(out_bus)
                await out_bus.wait_connected(timeout=60)
                await fleet.deploy_sample(bus)
                await wait_for(lambda: len(recorder.arrivals) >= 3, 180, "outputs on out")
            # The subscriber is away: outputs from now on queue for its session on the cloud.
            await wait_for(lambda: len(running_pids(view)) == 2, 120, "both workloads running")
            convolver = next(pid for (_, n), pid in running_pids(view).items() if "conv" in n)
            await asyncio.sleep(3)
            os.kill(convolver, signal.SIGSTOP)  # readings queue for the convolver's session
            await asyncio.sleep(4)
        queued = acknowledged(fleet.root / "agents", recorder.whole_since)
        killed = await asyncio.to_thread(fleet.kill_everything)
        assert killed >= 2, "the workloads were not among the processes killed"

        await asyncio.to_thread(fleet.start_all)
        view = FleetView(TENANT, APP)
        async with (
            Bus(fleet.bus_config("operator-restart-view-2")) as bus,
            Bus(fleet.bus_config(OUT_CLIENT, persistent=True)) as out_bus,
        ):
            view.attach(bus)
            recorder.attach(out_bus)
            await eventually(lambda: unsettled(fleet, bus, view), 240, "the fleet after restart")
            before = len(recorder.arrivals)
            await wait_for(lambda: len(recorder.arrivals) > before + 3, 120, "new outputs")

            sent = acknowledged(fleet.root / "agents", recorder.whole_since)

            async def missing() -> str | None:
                lost = Ledger(sent, recorder.readings).lost
                return f"{len(lost)} readings not on out, first {lost[:5]}" if lost else None

            await eventually(missing, 120, "acknowledged readings on out")
        assert queued, "no reading was acknowledged before the restart"
        assert not Ledger(queued, recorder.readings).lost
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nfleet files: {fleet.root}\n{fleet.logs()}") from None
    finally:
        recorder.dump(tmp_path / "out.jsonl")
        await asyncio.to_thread(fleet.stop)
