"""Draining a backlog: what a link's writer sends next after a long partition.

When a side connects and the queue for it holds more than ``drain.backlog`` messages (and the
link has a ``drain.rate``), everything queued up to that moment is the *backlog*. It crosses
oldest first at ``drain.rate`` messages per second at most (a token bucket), so the far broker
and the services behind it are not flooded with, say, 20,000 messages at once (Mosquitto
#1359); messages that arrive meanwhile are *live* and cross at once, ahead of the rest of the
backlog, so the site and the cloud keep talking while it drains.

Order per topic holds (MQTT promises no more): a live message of a topic that still has
messages in the backlog waits for them, unless only its newest value matters. That is so for
each retained topic (single-writer state: hello, state, actual, desired, wills) and each topic
a ``drain.latest_only`` filter matches (heartbeats by default: a burst of old heartbeats is
stale news, and would flip liveness back and forth): in the backlog only the newest message of
such a topic crosses, and none once a newer live one did. Those skipped are ``coalesced``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from fogmesh.broker.config import DrainSpec
from fogmesh.broker.diskqueue import DiskQueue, QueuedMessage
from fogmesh.broker.topicmatch import matches

__all__ = ["LIVE_PAGES", "Drain"]

LIVE_PAGES = 10
"""Pages of live messages looked through for ready ones, each round (the rest wait their turn)."""


class Drain:
    """One writer's view of its queue from the moment its side connected (no I/O but SQLite)."""

    def __init__(
        self,
        queue: DiskQueue,
        spec: DrainSpec,
        *,
        batch: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.queue = queue
        self.spec = spec
        self.batch = batch
        self.clock = clock
        self.mark = 0
        """The newest backlog message's seq (0: no backlog)."""
        self.left = 0
        """Backlog messages not yet crossed or coalesced."""
        self.through = 0
        """The backlog is done up to this seq."""
        self.newest: dict[str, int] = {}
        self.live_topics: set[str] = set()
        self.coalesced = 0
        self.sent = 0
        self.started = clock()
        self.finished: float | None = None
        self._tokens = 0.0
        self._at = self.started
        if spec.rate is not None and len(queue) > spec.backlog:
            self.mark = queue.last_seq()
            self.left = len(queue)
            self.newest = queue.newest_by_topic(self.mark)
            self._tokens = min(float(batch), spec.rate)  # a first batch at once

    @property
    def active(self) -> bool:
        """Whether a backlog is still draining."""
        return self.mark > 0

    def live(self) -> list[QueuedMessage]:
        """The live messages (arrived after the side connected) that may cross now: not those
        of a topic whose older backlog messages must cross first."""
        ready: list[QueuedMessage] = []
        after = self.mark
        for _ in range(LIVE_PAGES):  # waiting messages must not hide the ready ones behind
            page = self.queue.peek_range(self.batch, after=after)
            for msg in page:
                if self._latest(msg) or self.newest.get(msg.topic, 0) <= self.through:
                    ready.append(msg)
            if len(ready) >= self.batch or len(page) < self.batch:
                break
            after = page[-1].seq
        return ready[: self.batch]

    def live_crossed(self, batch: list[QueuedMessage]) -> None:
        """``batch`` (from :meth:`live`) reached the far side."""
        self.queue.remove_seqs([m.seq for m in batch])
        self.live_topics.update(m.topic for m in batch)

    def allowance(self) -> int:
        """How many backlog messages may be sent now (the token bucket)."""
        rate = self.spec.rate or 0.0
        now = self.clock()
        self._tokens = min(float(self.batch), self._tokens + (now - self._at) * rate)
        self._at = now
        return min(self.batch, int(self._tokens))

    def wait_s(self) -> float:
        """Seconds until the bucket holds one message again."""
        rate = self.spec.rate or 1.0
        return max(0.0, (1.0 - self._tokens) / rate)

    def take(self, limit: int) -> tuple[list[QueuedMessage], list[QueuedMessage]]:
        """The next up to ``limit`` backlog messages: those to send, and all looked at (none:
        the backlog is done, and the drain ends). Pass both to :meth:`backlog_crossed`."""
        batch = self.queue.peek_range(limit, through=self.mark)
        if not batch:
            self.mark, self.left, self.newest = 0, 0, {}
            self.finished = self.clock()
            return [], []
        return [m for m in batch if not self._superseded(m)], batch

    def backlog_crossed(self, sent: list[QueuedMessage], looked_at: list[QueuedMessage]) -> int:
        """``sent`` reached the far side, the rest of ``looked_at`` was superseded: remove them
        all; returns how many were coalesced."""
        self.queue.remove_through(looked_at[-1].seq)
        self.through = looked_at[-1].seq
        self._tokens -= len(sent)
        self.sent += len(sent)
        self.left = max(0, self.left - len(looked_at))
        skipped = len(looked_at) - len(sent)
        self.coalesced += skipped
        return skipped

    def _latest(self, msg: QueuedMessage) -> bool:
        """Whether only the newest message of ``msg``'s topic matters."""
        return msg.retain or any(matches(msg.topic, f) for f in self.spec.latest_only)

    def _superseded(self, msg: QueuedMessage) -> bool:
        if not self._latest(msg):
            return False
        return self.newest.get(msg.topic, 0) > msg.seq or msg.topic in self.live_topics
