"""No reading lost across a planned move: the sample app's convolver (a native workload of real
agents) moves while a sensor publishes, and its ``seq`` values on ``out`` have no gap, no
duplicate and keep their order. The convolver's persistent session is the replica's
(``{tenant}-{workload}``, not per node), so Mosquitto queues what arrives while it is frozen
and moving, and the moved instance resumes that session."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from fogmesh.protocol.migration import MigrateWorkload, MigrationAction, StageOutcome
from tests.agent.support import wait_for
from tests.migrator.support import TENANT, stack
from tests.sample_app.helpers import USERNAME, AppProcess, Collector, Names, app_env, running

APP = "pipe"
WORKLOAD = f"{APP}-convolve-0"
READINGS = 60  # at 10 Hz: the move happens while the sensor still publishes


async def test_a_moved_convolver_loses_no_reading(tmp_path: Path, run_label: str) -> None:
    async with stack(tmp_path, run_label, ["m-a", "m-b"]) as st:
        names = Names(tenant=TENANT, app=APP)
        env = app_env(st.broker, TENANT, APP)
        reply = await st.deploy(
            APP, name="convolve", executable=sys.executable,
            command=["-m", "fogmesh_sample.convolve"], inputs=["in"], outputs=["out"],
            env={k: v for k, v in env.items() if k != "FM_PASSWORD"},
            requests={"cpu": "50m", "memory": "32Mi"},
        )  # fmt: skip
        source = reply.app.placements[0].node
        assert source is not None
        peer = "m-b" if source == "m-a" else "m-a"
        await wait_for(lambda: st.runs(source, WORKLOAD), 60, "the convolver runs")
        sensor = AppProcess(
            "sensor",
            {**env, "FM_CLIENT_ID": f"{USERNAME}-sensor-{run_label[-8:]}", "FM_RATE_HZ": "10"},
            tmp_path / "sensor.log",
            args=("--count", str(READINGS), "--seed", "7"),
        )
        with Collector(st.broker, names) as collector, running(sensor):
            # the first output: the convolver has subscribed (its session exists from here on)
            await wait_for(lambda: bool(collector.seqs_out()), 60, "the first output")
            first = min(collector.seqs_out())

            answer = await st.ask(MigrationAction.MIGRATE, MigrateWorkload(workload=WORKLOAD))

            assert answer.outcomes == {WORKLOAD: StageOutcome.MOVED}, answer.reasons
            assert answer.peers == {WORKLOAD: peer}
            assert await asyncio.to_thread(sensor.wait) == 0, sensor.log()
            want = set(range(first, READINGS))
            await wait_for(lambda: collector.seqs_out() >= want, 60, "every reading convolved")
            await asyncio.sleep(1.0)  # a duplicate would arrive about now
            with collector.lock:
                order = [seq for seq in collector.outputs if seq >= first]
                count = collector.output_count
                workers = {body["worker"] for body in collector.outputs.values()}
        assert order == sorted(want), "outputs out of order or with a gap"
        assert count == len(collector.outputs), "a reading was convolved twice"
        assert workers == {f"{USERNAME}-{TENANT}-{WORKLOAD}"}  # one session on both nodes
        assert st.where(WORKLOAD) == [peer]
