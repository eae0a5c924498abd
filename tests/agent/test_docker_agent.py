"""The agent against real dockerd, a real Mosquitto and itself as a child process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fogmesh.protocol import (
    ActualState,
    Heartbeat,
    NodeHello,
    NodeStateMessage,
    WorkloadPhase,
    topics,
)
from tests.agent.helpers import desired, docker_workload
from tests.agent.support import (
    AgentProc,
    Probe,
    docker,
    docker_json,
    mosquitto_pub,
    running_containers,
    wait_for,
)
from tests.support.brokers import BrokerProcess
from tests.support.buses import unique
from tests.support.images import BUSYBOX_TAG

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("busybox")]
busybox = BUSYBOX_TAG


def _env(container: str) -> list[str]:
    info = docker_json("inspect", container)
    return list(info[0]["Config"]["Env"])


def _latest(box: list[ActualState]) -> ActualState | None:
    return box[-1] if box else None


def _phase(box: list[ActualState], name: str) -> WorkloadPhase | None:
    actual = _latest(box)
    if actual is None:
        return None
    for w in actual.workloads:
        if w.name == name:
            return w.phase
    return None


async def test_desired_state_drives_containers(
    broker: BrokerProcess,
    agents: list[AgentProc],
    probe: Probe,
    tmp_path: Path,
    run_label: str,
) -> None:
    """Publish (mosquitto_pub -r) -> container runs; new env -> replaced; docker kill ->
    restarted; an older generation is ignored; removed from desired -> container removed.
    Also: hello and state online are retained, heartbeats arrive with workload status."""
    node = unique("n")
    tenant = unique("t")
    hellos = probe.watch(topics.node(node, "hello"), NodeHello)
    states = probe.watch(topics.node(node, "state"), NodeStateMessage)
    actuals: list[ActualState] = probe.watch(topics.node(node, "actual"), ActualState)
    beats: list[Heartbeat] = probe.watch(topics.node(node, "heartbeat"), Heartbeat)
    agent = AgentProc(node, broker.port, tmp_path / "state", run_label).start()
    agents.append(agent)
    await wait_for(lambda: bool(hellos) and bool(states), what="hello and state")
    assert states[-1].state == "online"
    assert "native" in hellos[-1].facts.runtimes
    assert "docker" in hellos[-1].facts.runtimes
    assert hellos[-1].facts.cpu_count >= 1

    cname = f"fm-{node}-{tenant}-app-web-0"
    spec = docker_workload("web", tenant, busybox, env={"COLOUR": "red"})
    mosquitto_pub(broker, topics.node(node, "desired"), desired(node, 1, spec))
    await wait_for(lambda: cname in running_containers(run_label), what="container running")
    assert "COLOUR=red" in _env(cname)
    await wait_for(lambda: _phase(actuals, "web") is WorkloadPhase.RUNNING, what="actual running")
    assert (disk := json.loads((tmp_path / "state" / "desired.json").read_text()))[
        "generation"
    ] == 1
    assert disk["workloads"][0]["name"] == "web"
    await wait_for(
        lambda: any(b.workloads and b.workloads[0].phase == "running" for b in beats),
        what="heartbeat with the workload",
    )

    # a new env replaces the container
    first_id = running_containers(run_label)[cname]
    spec2 = docker_workload("web", tenant, busybox, env={"COLOUR": "blue"})
    mosquitto_pub(broker, topics.node(node, "desired"), desired(node, 2, spec2))
    await wait_for(
        lambda: running_containers(run_label).get(cname, first_id) != first_id,
        what="container replaced",
    )
    assert "COLOUR=blue" in _env(cname)
    assert len(running_containers(run_label)) == 1

    # killed from outside -> started again by the agent (restart policy always)
    second_id = running_containers(run_label)[cname]
    docker("kill", cname)
    await wait_for(
        lambda: (
            docker_json("inspect", cname)[0]["State"]["Running"]
            and docker_json("inspect", cname)[0]["RestartCount"] == 0
            and _restarts(actuals, "web") >= 1
        ),
        what="killed container restarted",
    )
    assert running_containers(run_label)[cname] == second_id  # same container, started again

    # an older generation is ignored: the workload stays
    mosquitto_pub(broker, topics.node(node, "desired"), desired(node, 1))
    await wait_for(lambda: "ignoring an older desired state" in agent.log_text(), what="ignored")
    assert running_containers(run_label)[cname] == second_id
    # removing it from desired removes the container
    mosquitto_pub(broker, topics.node(node, "desired"), desired(node, 3))
    await wait_for(
        lambda: not docker("ps", "-aq", "--filter", f"label={run_label}").strip(),
        what="container removed",
    )
    await wait_for(
        lambda: (
            (a := _latest(actuals)) is not None
            and a.observed_generation == 3
            and not a.workloads
            and a.state == "converged"
        ),
        what="actual empty and converged",
    )
    agent.stop()
    await wait_for(lambda: states[-1].state == "offline", what="clean shutdown says offline")


def _restarts(box: list[ActualState], name: str) -> int:
    actual = _latest(box)
    if actual is None:
        return 0
    return next((w.restarts for w in actual.workloads if w.name == name), 0)
