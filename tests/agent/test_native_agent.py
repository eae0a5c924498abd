"""The agent with the native runtime: a shell-script workload, no Docker needed."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import psutil

from fogmesh.protocol import ActualState, WorkloadPhase, topics
from tests.agent.helpers import desired, native_workload
from tests.agent.support import AgentProc, Probe, mosquitto_pub, wait_for
from tests.support.brokers import BrokerProcess
from tests.support.buses import unique

SCRIPT = """#!/bin/sh
trap 'exit 0' TERM
echo "native up colour=$COLOUR"
while true; do sleep 1; done
"""


def _status(box: list[ActualState], name: str) -> tuple[WorkloadPhase | None, str, int]:
    if not box:
        return None, "", 0
    for w in box[-1].workloads:
        if w.name == name:
            return w.phase, w.runtime_id, w.restarts
    return None, "", 0


def _alive(pid: str) -> bool:
    try:
        return bool(psutil.Process(int(pid)).status() != psutil.STATUS_ZOMBIE)
    except (psutil.Error, ValueError):
        return False


def _colour(pid: str) -> str | None:
    try:
        colour = psutil.Process(int(pid)).environ().get("COLOUR")
        return None if colour is None else str(colour)
    except (psutil.Error, ValueError):
        return None


async def test_native_workload_lifecycle(
    broker: BrokerProcess, agents: list[AgentProc], probe: Probe, tmp_path: Path, run_label: str
) -> None:
    """A script runs; a new env replaces the process; killed from outside it is started again;
    removed from desired its process is gone."""
    node, tenant = unique("n"), unique("t")
    script = tmp_path / "app.sh"
    script.write_text(SCRIPT)
    actuals: list[ActualState] = probe.watch(topics.node(node, "actual"), ActualState)
    agents.append(
        AgentProc(
            node, broker.port, tmp_path / "state", run_label, extra=["--runtimes", "native"]
        ).start()
    )
    spec = native_workload("job", tenant, str(script), env={"COLOUR": "red"})
    mosquitto_pub(broker, topics.node(node, "desired"), desired(node, 1, spec))
    await wait_for(
        lambda: _status(actuals, "job")[0] is WorkloadPhase.RUNNING, what="native running"
    )
    pid = _status(actuals, "job")[1]
    assert _alive(pid)
    assert _colour(pid) == "red"

    spec2 = native_workload("job", tenant, str(script), env={"COLOUR": "green"})
    mosquitto_pub(broker, topics.node(node, "desired"), desired(node, 2, spec2))
    await wait_for(
        lambda: (
            _status(actuals, "job")[0] is WorkloadPhase.RUNNING
            and _status(actuals, "job")[1] not in ("", pid)
        ),
        what="native replaced",
    )
    await wait_for(lambda: not _alive(pid), what="old process gone")
    pid2 = _status(actuals, "job")[1]
    assert _colour(pid2) == "green"

    os.kill(int(pid2), signal.SIGKILL)
    await wait_for(
        lambda: (
            _status(actuals, "job")[2] >= 1
            and _status(actuals, "job")[0] is WorkloadPhase.RUNNING
            and _status(actuals, "job")[1] not in ("", pid2)
        ),
        what="killed process restarted",
    )
    pid3 = _status(actuals, "job")[1]
    assert _alive(pid3)

    mosquitto_pub(broker, topics.node(node, "desired"), desired(node, 3))
    await wait_for(lambda: not _alive(pid3), what="process stopped on removal")
    await wait_for(
        lambda: (
            bool(actuals) and not actuals[-1].workloads and actuals[-1].observed_generation == 3
        ),
        what="actual empty",
    )
