"""Capped, jittered exponential back-off ("full jitter"), so a fleet that loses its broker
at once does not come back at once."""

from __future__ import annotations

import random

__all__ = ["backoff_delay"]


def backoff_delay(attempt: int, *, base: float, cap: float) -> float:
    """Seconds to wait before reconnect attempt ``attempt`` (0 for the first retry)."""
    ceiling = min(cap, base * (2 ** min(attempt, 32)))
    return random.uniform(0, ceiling)
