"""A busy node's usage upstream (docs/agent.md, "Heartbeats"): usage-only news, the node's or a
workload's, waits the usage wait (``heartbeat_usage_wait_s``, by default a fifth of the longest
gap, 60 s at the defaults) after the last heartbeat, then goes out at the first tick with it
still moved; a workload's status change goes out at once, and the longest gap holds as before."""

from __future__ import annotations

from pathlib import Path

from fogmesh.agent.config import load_config
from fogmesh.agent.heartbeat import BeatPolicy
from fogmesh.agent.service import Agent
from fogmesh.protocol import WorkloadPhase
from tests.agent.helpers import GIB
from tests.agent.helpers import sampled_status as _status
from tests.agent.helpers import sampled_usage as _usage


def _started(usage_min_s: float | None = None) -> BeatPolicy:
    policy = BeatPolicy(every_s=5, max_s=300, deadband_percent=5, usage_min_s=usage_min_s)
    first = policy.decide(_usage(), [_status()], 0.0)
    assert (first.send, first.workloads, first.why) == (True, True, "first")
    policy.sent(_usage(), [_status()], 0.0)
    return policy


def test_the_usage_wait_is_a_fifth_of_the_longest_gap_unless_given() -> None:
    assert BeatPolicy(every_s=5, max_s=300, deadband_percent=5).usage_min_s == 60
    assert BeatPolicy(every_s=5, max_s=300, deadband_percent=5, usage_min_s=30).usage_min_s == 30
    # never longer than the longest gap
    assert BeatPolicy(every_s=1, max_s=10, deadband_percent=5, usage_min_s=99).usage_min_s == 10


def test_the_usage_wait_is_a_setting_of_the_agent(tmp_path: Path) -> None:
    """``heartbeat_usage_wait_s`` is the agent's usage wait; unset, it is derived as before."""

    def wait(**settings: float) -> float:
        config = load_config(None, {"node_id": "n1", "state_dir": str(tmp_path), **settings})
        return Agent(config).beats.usage_min_s

    assert wait() == 60
    assert wait(heartbeat_max_interval_s=30) == 6
    assert wait(heartbeat_usage_wait_s=15) == 15
    assert wait(heartbeat_usage_wait_s=0) == 0  # usage news at the first tick with it
    assert wait(heartbeat_usage_wait_s=900) == 300  # never longer than the longest gap


def test_node_usage_news_waits_for_the_usage_wait() -> None:
    policy = _started()
    for now in (5.0, 30.0, 55.0):  # moved by far more than the deadband, but not yet
        assert not policy.decide(_usage(cpu=60.0), [_status()], now).send
    due = policy.decide(_usage(cpu=60.0), [_status()], 60.0)
    assert (due.send, due.workloads, due.why) == (True, False, "usage")
    policy.sent(_usage(cpu=60.0), None, 60.0)
    # a move that comes back within the wait is no news at its end
    assert not policy.decide(_usage(cpu=10.0), [_status()], 100.0).send
    assert not policy.decide(_usage(cpu=61.0), [_status()], 120.0).send


def test_a_spike_that_is_over_goes_out_at_once() -> None:
    """A high reading sent (the first news after a quiet while goes at once) is followed at once
    by its fall: the cloud never holds a spike that is over as an overload, which the migrator
    would act on after 30 s above 90 %."""
    policy = _started()
    policy.sent(_usage(), None, 100.0)  # quiet for a while
    spike = policy.decide(_usage(cpu=95.0), [_status()], 400.0)
    assert spike.send  # the longest gap had passed: news goes at once
    policy.sent(_usage(cpu=95.0), None, 400.0)
    calm = policy.decide(_usage(cpu=5.0), [_status()], 405.0)
    assert (calm.send, calm.why) == (True, "usage-high")
    policy.sent(_usage(cpu=5.0), None, 405.0)
    # calm again: usage news waits as before
    assert not policy.decide(_usage(cpu=40.0), [_status()], 410.0).send
    # memory high counts the same way
    policy.sent(_usage().model_copy(update={"memory_used_bytes": 7 * GIB}), None, 500.0)
    assert policy.decide(_usage(), [_status()], 505.0).why == "usage-high"


def test_workload_usage_news_waits_too_and_carries_the_statuses() -> None:
    policy = _started()
    assert not policy.decide(_usage(), [_status(cpu=40.0)], 5.0).send
    due = policy.decide(_usage(), [_status(cpu=40.0)], 60.0)
    assert (due.send, due.workloads, due.why) == (True, True, "workload-usage")


def test_a_status_change_goes_out_at_once_and_restarts_the_wait() -> None:
    policy = _started()
    failed = policy.decide(_usage(cpu=60.0), [_status(WorkloadPhase.FAILED)], 5.0)
    assert (failed.send, failed.workloads, failed.why) == (True, True, "workloads")
    policy.sent(_usage(cpu=60.0), [_status(WorkloadPhase.FAILED)], 5.0)
    # its heartbeat carried the usage of then; the next usage news waits from it
    assert not policy.decide(_usage(cpu=20.0), [_status(WorkloadPhase.FAILED)], 60.0).send
    moved = policy.decide(_usage(cpu=20.0), [_status(WorkloadPhase.FAILED)], 65.0)
    assert (moved.send, moved.why) == (True, "usage")


def test_the_longest_gap_still_holds_and_a_reconnect_sends_at_once() -> None:
    policy = _started()
    assert not policy.decide(_usage(), [_status()], 265.0).send
    due = policy.decide(_usage(), [_status()], 300.0)
    assert (due.send, due.why) == (True, "max-interval")
    policy.sent(_usage(), None, 300.0)
    policy.reset()
    again = policy.decide(_usage(cpu=80.0), [_status()], 305.0)
    assert (again.send, again.workloads, again.why) == (True, True, "first")


def test_no_wait_keeps_usage_news_at_the_sampling_tick() -> None:
    policy = _started(usage_min_s=0)
    moved = policy.decide(_usage(cpu=80.0), [_status()], 5.0)
    assert (moved.send, moved.why) == (True, "usage")


def test_the_previous_design_ignores_the_wait() -> None:
    policy = BeatPolicy(every_s=5, max_s=300, deadband_percent=5, on_change=False)
    policy.sent(_usage(), [_status()], 0.0)
    assert policy.decide(_usage(cpu=80.0), [_status()], 5.0).send
