"""The bounded outbox that holds publishes while the bus is disconnected.

Order is kept. A retained message is state (the latest value is all that matters), so a newer
retained message on the same topic replaces the older one in place of queueing behind it.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from fogmesh.bus._config import OutboxPolicy
from fogmesh.protocol import NotConnectedError

__all__ = ["OutboundMessage", "Outbox"]


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    """One publish waiting for a connection."""

    topic: str
    payload: bytes
    qos: int
    retain: bool


class Outbox:
    """A FIFO of :class:`OutboundMessage` with a bound and a policy for when it is full."""

    def __init__(self, limit: int, policy: OutboxPolicy) -> None:
        self._limit = limit
        self._policy = policy
        self._queue: deque[OutboundMessage] = deque()
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._queue)

    def put(self, message: OutboundMessage) -> None:
        """Queue ``message``; apply the policy when full."""
        if message.retain:
            self._drop_retained(message.topic)
        if len(self._queue) >= self._limit:
            if self._policy is OutboxPolicy.REJECT:
                raise NotConnectedError(
                    f"not connected and the outbox holds {self._limit} messages",
                    topic=message.topic,
                )
            self._drop_oldest()
        self._queue.append(message)

    def push_front(self, message: OutboundMessage) -> None:
        """Put back a message whose send failed, so it goes first next time."""
        self._queue.appendleft(message)

    def requeue(self, message: OutboundMessage) -> None:
        """Put back a message whose send failed, first in line, unless it is retained state
        and a newer value for its topic was queued meanwhile (then the old one is dropped)."""
        if message.retain and any(q.retain and q.topic == message.topic for q in self._queue):
            return
        self._queue.appendleft(message)

    def pop(self) -> OutboundMessage | None:
        """The oldest message, or None when empty."""
        return self._queue.popleft() if self._queue else None

    def _drop_retained(self, topic: str) -> None:
        for queued in self._queue:
            if queued.retain and queued.topic == topic:
                self._queue.remove(queued)
                return

    def _drop_oldest(self) -> None:
        for queued in self._queue:
            if not queued.retain:
                self._queue.remove(queued)
                self.dropped += 1
                return
        self._queue.popleft()
        self.dropped += 1
