"""Offline autonomy: the broker is down and the agent restarts; its workloads come back from
the desired state on disk, still-running ones are adopted (not duplicated), and when the broker
returns the agent says hello and publishes actual again."""

from __future__ import annotations

from pathlib import Path

import psutil
import pytest

from fogmesh.protocol import ActualState, NodeHello, WorkloadPhase
from tests.agent.helpers import desired, docker_workload, native_workload
from tests.agent.support import AgentNode, AgentProc, docker, inspect, wait_for
from tests.support.buses import unique
from tests.support.images import BUSYBOX_TAG

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("busybox")]
busybox = BUSYBOX_TAG


def _alive(pid: str) -> bool:
    try:
        return bool(psutil.Process(int(pid)).status() != psutil.STATUS_ZOMBIE)
    except (psutil.Error, ValueError):
        return False


async def test_restart_while_offline_brings_workloads_back(
    agent_node: AgentNode, tmp_path: Path
) -> None:
    node, tenant = agent_node.node, unique("t")
    script = tmp_path / "app.sh"
    script.write_text("trap 'exit 0' TERM\nwhile true; do sleep 1; done\n")
    hellos = agent_node.watch("hello", NodeHello)
    actuals = agent_node.watch("actual", ActualState)
    broker = agent_node.broker
    agent = agent_node.start()
    keep = f"fm-{node}-{tenant}-app-keep-0"
    lost = f"fm-{node}-{tenant}-app-lost-0"
    doc = desired(
        node,
        1,
        docker_workload("keep", tenant, busybox),
        docker_workload("lost", tenant, busybox),
        native_workload("proc", tenant, str(script)),
    )
    agent_node.set_desired(doc)
    await wait_for(
        lambda: (
            bool(actuals) and actuals[-1].state == "converged" and len(actuals[-1].workloads) == 3
        ),
        what="three workloads running",
    )
    keep_id = agent_node.containers()[keep]
    native_pid = next(w.runtime_id for w in actuals[-1].workloads if w.name == "proc")
    first_boot = hellos[-1].boot_id

    # the WAN / broker goes away, then the agent dies and one workload of each kind is lost
    broker.stop()
    agent.kill()
    docker("rm", "-f", lost)
    psutil.Process(int(native_pid)).kill()
    await wait_for(lambda: not _alive(native_pid), what="native process gone")

    agent2 = agent_node.start()

    def back() -> bool:
        running = agent_node.containers()
        return keep in running and lost in running and "proc" in _native_running(agent2)

    await wait_for(back, what="workloads back with no broker")
    assert agent_node.containers()[keep] == keep_id  # adopted, not recreated
    same_name = docker("ps", "-aq", "--filter", f"label={agent_node.run_label}").split()
    assert len(same_name) == 2  # no duplicates
    assert inspect(keep)["State"]["Running"]

    # the link returns: hello (new boot id) and actual are published again
    broker.start()
    await wait_for(
        lambda: bool(hellos) and hellos[-1].boot_id != first_boot, timeout=60, what="new hello"
    )
    await wait_for(
        lambda: (
            actuals[-1].state == "converged"
            and {w.name for w in actuals[-1].workloads} == {"keep", "lost", "proc"}
            and all(w.phase is WorkloadPhase.RUNNING for w in actuals[-1].workloads)
        ),
        timeout=60,
        what="actual republished",
    )


def _native_running(agent: AgentProc) -> str:
    """Names of running native workloads, from the agent's log ("workload phase" lines)."""
    text = agent.log_text()
    return "proc" if '"workload": "proc", "old": "starting", "new": "running"' in text else ""
