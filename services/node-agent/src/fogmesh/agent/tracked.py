"""What the agent knows of each desired workload, and how it judges them together."""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from fogmesh.agent.phases import PhaseMachine
from fogmesh.protocol import RestartPolicy, WorkloadPhase, WorkloadSpec, WorkloadStatus

__all__ = ["STABLE_AFTER_S", "Tracked", "overall_state", "retry_delay"]

P = WorkloadPhase
STABLE_AFTER_S = 30.0
"""A workload that has run this long is healthy again: its crash back-off starts over."""


def retry_delay(attempt: int, *, base: float, cap: float) -> float:
    """Seconds before retry ``attempt`` (0 = the first): half the capped exponential ceiling
    plus a random half of it ("equal jitter"), so retries spread but never come at once."""
    ceiling = float(min(cap, base * (2 ** min(attempt, 32))))
    return ceiling / 2 + random.uniform(0, ceiling / 2)


@dataclass
class Tracked:
    """What the agent knows of one desired workload."""

    spec: WorkloadSpec
    machine: PhaseMachine
    restarts: int = 0
    failures: int = 0
    """Consecutive failures (runtime errors or crashes) since the workload last ran stably."""
    retry_at: float = 0.0
    """``time.monotonic()`` before which no new attempt is made."""
    runtime_id: str = ""
    cpu_percent: float = 0.0
    memory_bytes: int = 0
    finished: bool = False
    """It ended and its restart policy says it stays ended (until its spec changes)."""

    def status(self) -> WorkloadStatus:
        """The workload's status for actual and the heartbeat."""
        spec = self.spec
        return WorkloadStatus(
            name=spec.name,
            tenant=spec.tenant,
            app=spec.app,
            component=spec.component,
            runtime=spec.runtime,
            phase=self.machine.phase,
            reason=self.machine.reason,
            spec_hash=spec.spec_hash(),
            restarts=self.restarts,
            since=self.machine.since,
            runtime_id=self.runtime_id[:128],
            cpu_percent=self.cpu_percent,
            memory_bytes=self.memory_bytes,
        )


def overall_state(
    tracked: Iterable[Tracked], *, pending_removals: bool
) -> Literal["converged", "converging", "degraded"]:
    """converged (all settled), converging, or degraded (something failed)."""
    items = list(tracked)
    if any(t.machine.phase is P.FAILED for t in items):
        return "degraded"
    settled = all(
        t.machine.phase is P.RUNNING
        or (
            t.machine.phase in {P.STOPPED, P.CONFIGURED}
            and t.spec.restart_policy is not RestartPolicy.ALWAYS
        )
        for t in items
    )
    return "converged" if settled and not pending_removals else "converging"
