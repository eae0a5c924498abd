"""The router's defences against a flood: per-tenant token buckets and a recent-id memory."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable

__all__ = ["RecentIds", "TokenBuckets"]


class TokenBuckets:
    """One token bucket per key (a tenant): ``rate`` tokens a second, at most ``burst``.

    Keys that have not been seen for a while fall out (at most ``max_keys`` are kept), so a
    sender inventing tenant names cannot grow it without bound.
    """

    def __init__(
        self,
        rate: float,
        burst: float,
        *,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("need rate > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._max_keys = max_keys
        self._clock = clock
        self._buckets: OrderedDict[Hashable, tuple[float, float]] = OrderedDict()

    def take(self, key: Hashable) -> float:
        """Take one token for ``key``: 0.0 when granted, else seconds until one is there."""
        now = self._clock()
        tokens, then = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - then) * self.rate)
        wait = 0.0
        if tokens >= 1:
            tokens -= 1
        else:
            wait = (1 - tokens) / self.rate
        self._buckets[key] = (tokens, now)
        while len(self._buckets) > self._max_keys:
            self._buckets.popitem(last=False)
        return wait


class RecentIds:
    """The last ``size`` keys seen, oldest forgotten first."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("size must be at least 1")
        self._size = size
        self._seen: OrderedDict[Hashable, None] = OrderedDict()

    def seen_before(self, key: Hashable) -> bool:
        """Remember ``key``; True when it was already remembered."""
        if key in self._seen:
            self._seen.move_to_end(key)
            return True
        self._seen[key] = None
        if len(self._seen) > self._size:
            self._seen.popitem(last=False)
        return False
