"""The registry's own timeline: the moment up to which it has read what arrived.

A node's silence is judged on what the registry has handled. A heartbeat taken off the
connection waits in its subscription's queue until the registry gets to it (behind a join
storm, seconds on a loaded machine); judged by the clock meanwhile, its node looks silent
although its heartbeat arrived in time. So each sign of life counts from when the bus
received it (``MessageContext.received``), and the judge's "now" is the arrival of the oldest
hello, state or heartbeat not yet handled (every earlier one is handled: each queue is first
in, first out), or the clock when nothing waits.

A registry hopelessly behind must still judge: the judge's "now" is never more than
``max_behind`` before the clock. Then a node is judged late by at most ``max_behind``.
"""

from __future__ import annotations

import math
from typing import Protocol

from fogmesh.bus import MessageContext

__all__ = ["ReadTimeline"]


class _Backlog(Protocol):
    def waiting_since(self) -> float | None: ...


class ReadTimeline:
    """Where the registry's reading stands, from the queues of the subscriptions it reads."""

    def __init__(self, *, max_behind: float) -> None:
        self.max_behind = max_behind
        self._queues: dict[int, _Backlog] = {}
        self._judged = -math.inf

    def received(self, ctx: MessageContext, clock: float) -> float:
        """When the message of ``ctx`` arrived (``clock`` for a context without a stamp);
        its subscription's queue counts from now on."""
        queue = ctx.backlog
        if queue is not None and id(queue) not in self._queues:
            self._queues[id(queue)] = queue
        return ctx.received or clock

    def behind(self, clock: float) -> float:
        """How far the reading is behind ``clock`` now (seconds, 0 when nothing waits)."""
        oldest = clock
        for queue in self._queues.values():
            since = queue.waiting_since()
            if since is not None and since < oldest:
                oldest = since
        return clock - oldest

    def now(self, clock: float) -> float:
        """The judge's "now" at ``clock``: the arrival of the oldest sign of life not yet
        handled, at most ``max_behind`` before ``clock``; never earlier than the last one."""
        at = clock - min(self.behind(clock), self.max_behind)
        self._judged = max(self._judged, at)
        return self._judged
