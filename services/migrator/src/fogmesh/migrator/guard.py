"""The rules against flapping: a cool-down per workload, a budget of moves per node per
window, and never a move onto a node that was lost, or asked for its workloads to move, in the
last few minutes."""

from __future__ import annotations

import time
from collections import deque

__all__ = ["Guard"]


class Guard:
    """Remembers recent moves and failures; says why a move may not happen now."""

    def __init__(self, *, cooldown_s: float, budget: int, window_s: float, avoid_s: float) -> None:
        self.cooldown_s = cooldown_s
        self.budget = budget
        self.window_s = window_s
        self.avoid_s = avoid_s
        self._moved: dict[str, float] = {}
        self._off: dict[str, deque[float]] = {}
        self._failed: dict[str, float] = {}
        self._troubled: dict[str, tuple[float, str]] = {}

    def why_not(self, key: str, source: str, now: float | None = None) -> str | None:
        """Why workload ``key`` may not leave ``source`` now (None: it may)."""
        now = time.monotonic() if now is None else now
        last = self._moved.get(key)
        if last is not None and now - last < self.cooldown_s:
            return f"cool-down: moved {now - last:.0f}s ago (cooldown_s {self.cooldown_s:g})"
        recent = self._recent(source, now)
        if len(recent) >= self.budget:
            return f"budget: {len(recent)} moves off {source} in {self.window_s:g}s"
        return None

    def avoid(self, node: str, now: float | None = None) -> str | None:
        """Why no workload may move onto ``node`` now (None: it may)."""
        now = time.monotonic() if now is None else now
        failed = self._failed.get(node)
        if failed is not None and now - failed < self.avoid_s:
            return f"failed {now - failed:.0f}s ago (failed_node_avoid_s {self.avoid_s:g})"
        troubled = self._troubled.get(node)
        if troubled is not None and now - troubled[0] < self.avoid_s:
            return f"asked its workloads to move {now - troubled[0]:.0f}s ago ({troubled[1]})"
        return None

    def moved(self, key: str, source: str, now: float | None = None) -> None:
        """Record a move of ``key`` off ``source``."""
        now = time.monotonic() if now is None else now
        self._moved[key] = now
        self._recent(source, now).append(now)

    def failed(self, node: str, now: float | None = None) -> None:
        """Record that ``node`` was lost."""
        self._failed[node] = time.monotonic() if now is None else now

    def troubled(self, node: str, why: str, now: float | None = None) -> None:
        """Record that ``node`` asked for its workloads to move (it sees trouble coming)."""
        self._troubled[node] = (time.monotonic() if now is None else now, why)

    def _recent(self, source: str, now: float) -> deque[float]:
        times = self._off.setdefault(source, deque())
        while times and now - times[0] >= self.window_s:
            times.popleft()
        return times
