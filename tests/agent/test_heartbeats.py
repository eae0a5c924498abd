"""Heartbeats on news (docs/agent.md, "Heartbeats"): the policy alone, then the agent as a
process with its documented config keys on a real Mosquitto: the first heartbeat carries every
workload, a status change is sent at once, an idle node says nothing until its longest wait, a
frozen agent is declared offline by its will (the broker's keepalive), and
``heartbeat_on_change: false`` is the previous design (every interval, every workload)."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

from fogmesh.agent.heartbeat import BeatPolicy
from fogmesh.protocol import (
    Heartbeat,
    NodeLiveness,
    NodeStateMessage,
    WorkloadPhase,
    topics,
)
from tests.agent.helpers import GIB, desired, native_workload
from tests.agent.helpers import sampled_status as _status
from tests.agent.helpers import sampled_usage as _usage
from tests.agent.support import AgentProc, Probe, mosquitto_pub, wait_for
from tests.support.brokers import BrokerProcess
from tests.support.buses import unique

SCRIPT = "#!/bin/sh\ntrap 'exit 0' TERM\nwhile true; do sleep 1; done\n"


def test_policy_sends_news_and_otherwise_waits_for_the_longest_gap() -> None:
    # usage news at once here; its wait upstream: tests/agent/test_heartbeat_usage.py
    policy = BeatPolicy(every_s=5, max_s=300, deadband_percent=5, usage_min_s=0)
    assert policy.interval_s == 300
    first = policy.decide(_usage(), [_status()], 0.0)
    assert (first.send, first.workloads) == (True, True)
    policy.sent(_usage(), [_status()], 0.0)
    # small moves of usage are not news
    assert not policy.decide(_usage(cpu=6.0, memory=2 * GIB + (1 << 28)), [_status(cpu=3)], 5).send
    # the node's CPU moved by the deadband: usage only
    moved = policy.decide(_usage(cpu=7.5), [_status()], 10.0)
    assert (moved.send, moved.workloads, moved.why) == (True, False, "usage")
    policy.sent(_usage(cpu=7.5), None, 10.0)
    # a workload's phase changed: sent with the statuses
    failed = policy.decide(_usage(cpu=7.5), [_status(WorkloadPhase.FAILED)], 15.0)
    assert (failed.send, failed.workloads) == (True, True)
    policy.sent(_usage(cpu=7.5), [_status(WorkloadPhase.FAILED)], 15.0)
    # a workload came or went, or its CPU moved: news
    assert policy.decide(_usage(cpu=7.5), [], 20.0).workloads
    assert policy.decide(_usage(cpu=7.5), [_status(WorkloadPhase.FAILED, cpu=9)], 20.0).workloads
    # quiet until the next tick would pass the wait, 90-100 % of the longest gap
    assert not policy.decide(_usage(cpu=7.5), [_status(WorkloadPhase.FAILED)], 260.0).send
    due = policy.decide(_usage(cpu=7.5), [_status(WorkloadPhase.FAILED)], 311.0)
    assert (due.send, due.workloads, due.why) == (True, False, "max-interval")
    # a new session starts again with everything
    policy.reset()
    assert policy.decide(_usage(cpu=7.5), [_status(WorkloadPhase.FAILED)], 312.0).workloads


def test_previous_design_sends_every_tick_with_every_workload() -> None:
    policy = BeatPolicy(every_s=5, max_s=300, deadband_percent=5, on_change=False)
    policy.sent(_usage(), [_status()], 0.0)
    again = policy.decide(_usage(), [_status()], 5.0)
    assert (again.send, again.workloads, policy.interval_s) == (True, True, 5)


def test_an_idle_heartbeat_is_small() -> None:
    beat = Heartbeat(node="n-01", seq=12, ts=1796219880.281, interval_s=300, usage=_usage())
    wire = beat.model_dump_json(exclude_defaults=True)
    assert "workloads" not in json.loads(wire)
    assert Heartbeat.model_validate_json(wire).workloads is None  # absent: unchanged
    assert len(wire) < 300


def _config(tmp_path: Path, name: str, **keys: object) -> str:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({"runtimes": ["native"], "native_cgroup_parent": None, **keys}))
    return str(path)


async def test_agent_sends_news_at_once_and_is_quiet_when_idle(
    broker: BrokerProcess, agents: list[AgentProc], probe: Probe, tmp_path: Path, run_label: str
) -> None:
    node, tenant = unique("n"), unique("t")
    script = tmp_path / "idle.sh"
    script.write_text(SCRIPT)
    beats: list[Heartbeat] = probe.watch(topics.node(node, "heartbeat"), Heartbeat)
    states: list[NodeStateMessage] = probe.watch(topics.node(node, "state"), NodeStateMessage)
    # sampled every 0.2 s; usage never news (deadband 100 %), the longest gap an hour
    config = _config(
        tmp_path, "agent", heartbeat_max_interval_s=3600, heartbeat_deadband_percent=100
    )
    agent = AgentProc(node, broker.port, tmp_path / "state", run_label,
                      extra=["--config", config, "--heartbeat", "0.2"]).start()  # fmt: skip
    agents.append(agent)
    await wait_for(lambda: bool(beats), what="the first heartbeat")
    assert beats[0].workloads == []  # the first one carries every workload: none yet
    assert beats[0].interval_s == 3600

    spec = native_workload("idle", tenant, str(script))
    mosquitto_pub(broker, topics.node(node, "desired"), desired(node, 1, spec))

    def running() -> bool:
        last = [b for b in beats if b.workloads]
        return bool(last) and last[-1].workloads[0].phase is WorkloadPhase.RUNNING  # type: ignore[index]

    await wait_for(running, what="a heartbeat with the workload running")
    settled = len(beats)
    await asyncio.sleep(3.0)  # fifteen sampling ticks of an idle node
    quiet = beats[settled:]
    assert all(b.workloads is None or b.workloads[0].phase is WorkloadPhase.RUNNING for b in quiet)
    assert len(quiet) <= 1, [b.model_dump(exclude_defaults=True) for b in quiet]

    # frozen: the broker's keepalive (2 sampling intervals, rounded up) fires the will
    assert agent.proc is not None
    agent.proc.send_signal(signal.SIGSTOP)
    try:
        await wait_for(
            lambda: bool(states) and states[-1].state is NodeLiveness.OFFLINE,
            what="the will of the frozen agent",
        )
    finally:
        agent.proc.send_signal(signal.SIGCONT)


async def test_previous_design_behind_its_switch(
    broker: BrokerProcess, agents: list[AgentProc], probe: Probe, tmp_path: Path, run_label: str
) -> None:
    node = unique("n")
    beats: list[Heartbeat] = probe.watch(topics.node(node, "heartbeat"), Heartbeat)
    config = _config(tmp_path, "agent", heartbeat_on_change=False)
    agents.append(AgentProc(node, broker.port, tmp_path / "state", run_label,
                            extra=["--config", config, "--heartbeat", "0.2"]).start())  # fmt: skip
    await wait_for(lambda: len(beats) >= 5, what="five heartbeats")
    assert all(b.workloads == [] and b.interval_s == 0.2 for b in beats)
