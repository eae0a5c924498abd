"""The agent against real dockerd, a real Mosquitto and itself as a child process."""

from __future__ import annotations

import json

import pytest

from fogmesh.protocol import ActualState, Heartbeat, NodeHello, NodeStateMessage, WorkloadPhase
from tests.agent.helpers import desired, docker_workload
from tests.agent.support import AgentNode, docker, inspect, wait_for
from tests.support.buses import unique
from tests.support.images import BUSYBOX_TAG

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("busybox")]
busybox = BUSYBOX_TAG


def _env(container: str) -> list[str]:
    return list(inspect(container)["Config"]["Env"])


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


async def test_desired_state_drives_containers(agent_node: AgentNode) -> None:
    """Publish (mosquitto_pub -r) -> container runs; new env -> replaced; docker kill ->
    restarted; an older generation is ignored; removed from desired -> container removed.
    Also: hello and state online are retained, heartbeats arrive with workload status."""
    node = agent_node.node
    tenant = unique("t")
    hellos = agent_node.watch("hello", NodeHello)
    states = agent_node.watch("state", NodeStateMessage)
    actuals = agent_node.watch("actual", ActualState)
    beats = agent_node.watch("heartbeat", Heartbeat)
    agent = agent_node.start()
    await wait_for(lambda: bool(hellos) and bool(states), what="hello and state")
    assert states[-1].state == "online"
    assert "native" in hellos[-1].facts.runtimes
    assert "docker" in hellos[-1].facts.runtimes
    assert hellos[-1].facts.cpu_count >= 1

    cname = f"fm-{node}-{tenant}-app-web-0"
    spec = docker_workload("web", tenant, busybox, env={"COLOUR": "red"})
    agent_node.set_desired(desired(node, 1, spec))
    await wait_for(lambda: cname in agent_node.containers(), what="container running")
    assert "COLOUR=red" in _env(cname)
    await wait_for(lambda: _phase(actuals, "web") is WorkloadPhase.RUNNING, what="actual running")
    assert (disk := json.loads((agent_node.state_dir / "desired.json").read_text()))[
        "generation"
    ] == 1
    assert disk["workloads"][0]["name"] == "web"
    await wait_for(
        lambda: any(b.workloads and b.workloads[0].phase == "running" for b in beats),
        what="heartbeat with the workload",
    )

    # a new env replaces the container
    first_id = agent_node.containers()[cname]
    spec2 = docker_workload("web", tenant, busybox, env={"COLOUR": "blue"})
    agent_node.set_desired(desired(node, 2, spec2))
    await wait_for(
        lambda: agent_node.containers().get(cname, first_id) != first_id,
        what="container replaced",
    )
    assert "COLOUR=blue" in _env(cname)
    assert len(agent_node.containers()) == 1

    # killed from outside -> started again by the agent (restart policy always)
    second_id = agent_node.containers()[cname]
    docker("kill", cname)
    await wait_for(
        lambda: (
            inspect(cname)["State"]["Running"]
            and inspect(cname)["RestartCount"] == 0
            and _restarts(actuals, "web") >= 1
        ),
        what="killed container restarted",
    )
    assert agent_node.containers()[cname] == second_id  # same container, started again

    # an older generation is ignored: the workload stays
    agent_node.set_desired(desired(node, 1))
    await wait_for(lambda: "ignoring an older desired state" in agent.log_text(), what="ignored")
    assert agent_node.containers()[cname] == second_id
    # removing it from desired removes the container
    agent_node.set_desired(desired(node, 3))
    await wait_for(
        lambda: not docker("ps", "-aq", "--filter", f"label={agent_node.run_label}").strip(),
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
