"""The agent with the native runtime: a shell-script workload, no Docker needed."""

from __future__ import annotations

import os
import pwd
import signal
from pathlib import Path

import psutil

from fogmesh.agent.runtime import NativeRuntime, workload_key
from fogmesh.agent.runtime.native_isolation import account_name
from fogmesh.protocol import ActualState, Event, EventKind, NodeHello, WorkloadPhase, topics
from tests.agent.helpers import desired, native_workload
from tests.agent.support import AgentNode, wait_for
from tests.agent_runtime.helpers import eventually
from tests.support.buses import unique

ISO_TENANT = "iso-a"  # a fixed tenant: its system account is made once, not once per run
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


async def test_native_workload_lifecycle(agent_node: AgentNode, tmp_path: Path) -> None:
    """A script runs; a new env replaces the process; killed from outside it is started again;
    removed from desired its process is gone."""
    node, tenant = agent_node.node, unique("t")
    script = tmp_path / "app.sh"
    script.write_text(SCRIPT)
    actuals = agent_node.watch("actual", ActualState)
    agent_node.start("--runtimes", "native")
    spec = native_workload("job", tenant, str(script), env={"COLOUR": "red"})
    agent_node.set_desired(desired(node, 1, spec))
    await wait_for(
        lambda: _status(actuals, "job")[0] is WorkloadPhase.RUNNING, what="native running"
    )
    pid = _status(actuals, "job")[1]
    assert _alive(pid)
    assert _colour(pid) == "red"

    spec2 = native_workload("job", tenant, str(script), env={"COLOUR": "green"})
    agent_node.set_desired(desired(node, 2, spec2))
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

    agent_node.set_desired(desired(node, 3))
    await wait_for(lambda: not _alive(pid3), what="process stopped on removal")
    await wait_for(
        lambda: (
            bool(actuals) and not actuals[-1].workloads and actuals[-1].observed_generation == 3
        ),
        what="actual empty",
    )


ESCAPE = """#!/bin/sh
echo "uid $(id -u)"
if head -1 /etc/shadow >/dev/null 2>&1; then echo "shadow leaked"; else echo "shadow denied"; fi
if ls "$AGENT_STATE" >/dev/null 2>&1; then echo "state leaked"; else echo "state denied"; fi
trap 'exit 0' TERM
while true; do sleep 1; done
"""


async def test_tenant_native_workload_is_not_root(agent_node: AgentNode, tmp_path: Path) -> None:
    """The reported fault, through the agent: a tenant's ``/bin/sh`` component ran ``id`` as
    uid 0 and read /etc/shadow. Now it runs as its tenant's own unprivileged user."""
    node, tenant = agent_node.node, ISO_TENANT
    script = tmp_path / "escape.sh"
    script.write_text(ESCAPE)
    state = agent_node.state_dir
    actuals = agent_node.watch("actual", ActualState)
    agent_node.start("--runtimes", "native")
    spec = native_workload("probe", tenant, str(script), env={"AGENT_STATE": str(state)})
    agent_node.set_desired(desired(node, 1, spec))
    await wait_for(
        lambda: _status(actuals, "probe")[0] is WorkloadPhase.RUNNING, what="probe running"
    )
    runtime = NativeRuntime(state / "native", node)
    key = workload_key(tenant, "probe")

    async def printed() -> bool:
        return len(await runtime.logs(key)) >= 3

    await eventually(printed, what="probe output")
    account = pwd.getpwnam(account_name(tenant))
    assert await runtime.logs(key) == [f"uid {account.pw_uid}", "shadow denied", "state denied"]
    assert account.pw_uid != 0
    assert psutil.Process(int(_status(actuals, "probe")[1])).uids().effective == account.pw_uid


async def test_refused_native_component_is_rejected_not_crashed(
    agent_node: AgentNode, tmp_path: Path
) -> None:
    """``native_isolation: refuse``: the hello offers no native runtime, a native workload is
    failed with the reason (a workload-state event and actual), and the agent keeps serving."""
    node, tenant = agent_node.node, ISO_TENANT
    config = tmp_path / "agent.yaml"
    config.write_text("native_isolation: refuse\nruntimes: [native]\n")
    actuals = agent_node.watch("actual", ActualState)
    hellos = agent_node.watch("hello", NodeHello)
    events = agent_node.probe.watch(topics.tenant_event(tenant, EventKind.WORKLOAD_STATE), Event)
    agent = agent_node.start("--config", str(config))
    await wait_for(lambda: bool(hellos), what="hello")
    assert "native" not in hellos[-1].facts.runtimes
    spec = native_workload("job", tenant, "/bin/true")
    agent_node.set_desired(desired(node, 1, spec))

    def refused() -> bool:
        for w in actuals[-1].workloads if actuals else []:
            if w.name == "job" and w.phase is WorkloadPhase.FAILED and "refused" in w.reason:
                return True
        return False

    await wait_for(refused, what="workload failed as refused")
    assert actuals[-1].state == "degraded"
    await wait_for(
        lambda: any(e.workload == "job" and "refused" in e.message for e in events),
        what="workload-state event with the reason",
    )
    assert agent.alive()


async def test_two_tenants_run_the_same_workload_name_on_one_node(
    agent_node: AgentNode, tmp_path: Path
) -> None:
    """One desired state, two tenants, one workload name: two processes, two users, and each
    tenant's actual entry stays its own."""
    node, tenants = agent_node.node, (ISO_TENANT, "iso-b")
    script = tmp_path / "app.sh"
    script.write_text(SCRIPT)
    actuals = agent_node.watch("actual", ActualState)
    agent_node.start("--runtimes", "native")
    specs = [native_workload("job", t, str(script), env={"COLOUR": t}) for t in tenants]
    agent_node.set_desired(desired(node, 1, *specs))

    def both_running() -> bool:
        mine = [w for w in actuals[-1].workloads if w.name == "job"] if actuals else []
        return len(mine) == 2 and all(w.phase is WorkloadPhase.RUNNING for w in mine)

    await wait_for(both_running, what="both tenants' job running")
    pids = {w.tenant: w.runtime_id for w in actuals[-1].workloads}
    assert set(pids) == set(tenants)
    for tenant, pid in pids.items():
        assert _colour(pid) == tenant
        uid = psutil.Process(int(pid)).uids().effective
        assert uid == pwd.getpwnam(account_name(tenant)).pw_uid
    assert len(set(pids.values())) == 2
