"""The reconciler's failure and back-off bookkeeping.

A runtime failure marks the workload FAILED with its reason and sets when it is tried again,
after a capped, jittered back-off (``fogmesh.agent.tracked.retry_delay``); it ends that
workload's step (:class:`HandledFailure`), never the pass.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable
from typing import TypeVar

import structlog

from fogmesh.agent.runtime.errors import RuntimeFailure, RuntimeUnavailable
from fogmesh.agent.tracked import Tracked, retry_delay
from fogmesh.protocol import FogmeshError, WorkloadPhase

__all__ = ["FailureBackoff", "HandledFailure"]

log = structlog.get_logger("fogmesh.agent.reconcile")  # the reconciler's one logger

P = WorkloadPhase
T = TypeVar("T")


class FailureBackoff:
    """Part of :class:`~fogmesh.agent.reconcile.Reconciler`: records a workload's failures and
    says whether its back-off still runs."""

    retry_base: float  # set by Reconciler.__init__
    retry_cap: float

    async def _call(self, tracked: Tracked, call: Awaitable[T]) -> T:
        try:
            return await call
        except RuntimeFailure as exc:
            self._fail(tracked, str(exc), unavailable=isinstance(exc, RuntimeUnavailable))
            raise HandledFailure from exc

    def _fail(self, tracked: Tracked, reason: str, *, unavailable: bool = False) -> None:
        same = tracked.machine.phase is P.FAILED and tracked.machine.reason == reason[:2048]
        if same and time.monotonic() < tracked.retry_at:
            return
        tracked.failures += 1
        delay = retry_delay(tracked.failures - 1, base=self.retry_base, cap=self.retry_cap)
        tracked.retry_at = time.monotonic() + delay
        log.warning(
            "workload failed; will retry",
            workload=tracked.spec.name,
            reason=reason[:500],
            retry_in_s=round(delay, 2),
            engine_down=unavailable,
        )
        tracked.machine.drive_to(P.FAILED, reason)

    def _waiting(self, tracked: Tracked) -> bool:
        return time.monotonic() < tracked.retry_at


class HandledFailure(FogmeshError):
    """A runtime failure already recorded on the workload (ends that workload's step)."""
