"""Echo memory: recognise our own messages when a broker hands them back.

MQTT 3.1.1 has no no-local flag, so a link with a ``both`` rule that publishes a message on a
broker also receives it back from that broker's subscription (Mosquitto does this; the embedded
broker's split horizon does not). The link remembers what it just wrote on each side, as
(topic, payload hash) with a count, for a short time, and drops matching arrivals.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict

__all__ = ["EchoMemory"]


class EchoMemory:
    """A short-lived multiset of (topic, payload digest) entries."""

    def __init__(self, ttl: float = 30.0, max_entries: int = 100_000) -> None:
        """Entries live ``ttl`` seconds; at most ``max_entries`` are kept (oldest go first)."""
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[str, bytes], tuple[int, float]] = OrderedDict()

    @staticmethod
    def _key(topic: str, payload: bytes) -> tuple[str, bytes]:
        return topic, hashlib.blake2b(payload, digest_size=16).digest()

    def _prune(self, now: float) -> None:
        while self._entries:
            key, (_, expires) = next(iter(self._entries.items()))
            if expires > now and len(self._entries) <= self.max_entries:
                break
            del self._entries[key]

    def remember(self, topic: str, payload: bytes) -> None:
        """We are about to publish this: expect it back."""
        now = time.monotonic()
        key = self._key(topic, payload)
        count = self._entries.pop(key, (0, 0.0))[0]
        self._entries[key] = (count + 1, now + self.ttl)
        self._prune(now)

    def is_echo(self, topic: str, payload: bytes) -> bool:
        """True (and consume one count) if this arrival is one of ours coming back."""
        now = time.monotonic()
        self._prune(now)
        key = self._key(topic, payload)
        entry = self._entries.get(key)
        if entry is None:
            return False
        count, expires = entry
        if count <= 1:
            del self._entries[key]
        else:
            self._entries[key] = (count - 1, expires)
        return True
