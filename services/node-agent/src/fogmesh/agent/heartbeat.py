"""When the agent sends a heartbeat, and what it carries (docs/agent.md, "Heartbeats").

The agent samples its usage every ``heartbeat_interval_s`` but sends a heartbeat only with news:
the first after each (re)connect and a workload's status changed (phase, reason, restarts, spec,
instance) go out at once; a usage figure moved by ``heartbeat_deadband_percent`` or more since
the last one sent (node CPU in percent points, memory and disk in percent of their totals, a
workload's CPU in points or its memory in percent of the node's) goes out once the usage wait
(``usage_min_s``, the config's ``heartbeat_usage_wait_s``, by default a fifth of the longest
gap: 60 s) has passed since the last
heartbeat, so a busy node's usage crosses the WAN at most that often, except while the last
node usage sent was high (CPU or memory at :data:`HIGH_PERCENT` or more): then its moves go out at
once, so a spike that is over never stays in the cloud's view as an overload (the migrator moves
workloads off a node above 90 % for 30 s); and a heartbeat goes out anyway once
``heartbeat_max_interval_s`` has passed.
Each heartbeat's ``interval_s`` is that maximum: when to expect the next one at the latest.
The wait itself is drawn from 90-100 % of it each time, so the nodes of a site that (re)connect
together do not keep beating together.
Workload statuses ride along only when one of them is news; otherwise ``workloads`` is left
out (unchanged). ``heartbeat_on_change: false`` is the previous design: a heartbeat every
``heartbeat_interval_s`` with every workload's status.

No I/O here: :class:`BeatPolicy` is told what was sampled and says what to send.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from fogmesh.protocol import Usage, WorkloadStatus

__all__ = ["HIGH_PERCENT", "USAGE_SHARE", "BeatPolicy", "Decision"]

USAGE_SHARE = 5
"""By default usage-only news waits ``max_s / USAGE_SHARE`` after the last heartbeat."""

HIGH_PERCENT = 75.0
"""A node usage sent with CPU or memory at this percent or more is high: while it is the last one
sent, the node's usage news does not wait (below the migrator's default overload mark, 90)."""


@dataclass(frozen=True, slots=True)
class Decision:
    """What to send now: nothing, or a heartbeat with or without the workload statuses."""

    send: bool
    workloads: bool = False
    why: str = ""


_QUIET = Decision(False)


def _identity(status: WorkloadStatus) -> tuple[object, ...]:
    """A workload's status without its usage figures: any change of it is news."""
    return (
        status.tenant, status.name, status.app, status.component, status.runtime, status.phase,
        status.reason, status.spec_hash, status.restarts, status.since, status.runtime_id,
    )  # fmt: skip


def _moved(old: float, new: float, total: float, deadband: float) -> bool:
    """Whether ``old`` -> ``new`` is at least ``deadband`` percent of ``total``."""
    return total > 0 and abs(new - old) * 100.0 / total >= deadband


class BeatPolicy:
    """Decides each sampling tick whether a heartbeat goes out (see the module docstring)."""

    def __init__(
        self,
        *,
        every_s: float,
        max_s: float,
        deadband_percent: float,
        on_change: bool = True,
        usage_min_s: float | None = None,
    ) -> None:
        self.every_s = every_s
        self.max_s = max(max_s, every_s)
        self.usage_min_s = min(self.max_s / USAGE_SHARE if usage_min_s is None else usage_min_s,
                               self.max_s)  # fmt: skip
        """The shortest gap before a heartbeat whose only news is usage."""
        self.deadband = deadband_percent
        self.on_change = on_change
        self._usage: Usage | None = None
        self._statuses: dict[tuple[str, str], WorkloadStatus] | None = None
        self._sent_at: float | None = None
        self._due_at = 0.0

    @property
    def interval_s(self) -> float:
        """What each heartbeat says in ``interval_s``: the longest wait for the next one."""
        return self.max_s if self.on_change else self.every_s

    def reset(self) -> None:
        """After a (re)connect: the next heartbeat is sent, with every workload's status."""
        self._usage, self._statuses, self._sent_at = None, None, None

    def decide(self, usage: Usage, statuses: list[WorkloadStatus], now: float) -> Decision:
        """Whether to send at ``now`` (monotonic), given this tick's samples."""
        if not self.on_change:
            return Decision(True, workloads=True, why="every")
        if self._sent_at is None or self._usage is None or self._statuses is None:
            return Decision(True, workloads=True, why="first")
        if self._workloads_changed(statuses):
            return Decision(True, workloads=True, why="workloads")
        if self._was_high() and self._usage_moved(usage):
            return Decision(True, why="usage-high")
        if now - self._sent_at >= self.usage_min_s:
            if self._workload_usage_moved(statuses, usage.memory_total_bytes):
                return Decision(True, workloads=True, why="workload-usage")
            if self._usage_moved(usage):
                return Decision(True, why="usage")
        # the next tick would come after the longest wait: send now
        if now + self.every_s > self._due_at:
            return Decision(True, why="max-interval")
        return _QUIET

    def sent(self, usage: Usage, statuses: list[WorkloadStatus] | None, now: float) -> None:
        """A heartbeat went out with this usage (and these statuses, when it carried them)."""
        self._usage, self._sent_at = usage, now
        self._due_at = now + self.max_s * random.uniform(0.9, 1.0)
        if statuses is not None:
            self._statuses = {(s.tenant, s.name): s for s in statuses}

    def _was_high(self) -> bool:
        """Whether the last node usage sent had CPU or memory at :data:`HIGH_PERCENT` or more."""
        last = self._usage
        assert last is not None
        total = last.memory_total_bytes
        memory = 100.0 * last.memory_used_bytes / total if total > 0 else 0.0
        return last.cpu_percent >= HIGH_PERCENT or memory >= HIGH_PERCENT

    def _usage_moved(self, usage: Usage) -> bool:
        last, band = self._usage, self.deadband
        assert last is not None
        return (
            _moved(last.cpu_percent, usage.cpu_percent, 100.0, band)
            or _moved(
                last.memory_used_bytes, usage.memory_used_bytes, usage.memory_total_bytes, band
            )
            or _moved(last.disk_used_bytes, usage.disk_used_bytes, usage.disk_total_bytes, band)
            or last.memory_total_bytes != usage.memory_total_bytes
            or last.disk_total_bytes != usage.disk_total_bytes
        )

    def _workloads_changed(self, statuses: list[WorkloadStatus]) -> bool:
        """A workload came or went, or its status other than usage changed."""
        last = self._statuses
        assert last is not None
        if len(last) != len(statuses):
            return True
        for status in statuses:
            before = last.get((status.tenant, status.name))
            if before is None or _identity(before) != _identity(status):
                return True
        return False

    def _workload_usage_moved(self, statuses: list[WorkloadStatus], memory_total: int) -> bool:
        """A workload's CPU or memory moved by the deadband (the same workloads as last sent)."""
        last = self._statuses
        assert last is not None
        for status in statuses:
            before = last.get((status.tenant, status.name))
            if before is not None and (
                _moved(before.cpu_percent, status.cpu_percent, 100.0, self.deadband)
                or _moved(before.memory_bytes, status.memory_bytes, memory_total, self.deadband)
            ):
                return True
        return False
