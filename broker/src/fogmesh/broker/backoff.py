"""Capped, fully jittered exponential back-off for reconnects."""

from __future__ import annotations

import random

__all__ = ["backoff_delay"]


def backoff_delay(attempt: int, *, base: float, cap: float) -> float:
    """Seconds to wait before reconnect ``attempt`` (0-based): ``U(0, min(cap, base * 2**n))``.

    Full jitter spreads a fleet that lost the same link at the same moment, so a thousand sites
    coming back do not reconnect in lock-step.
    """
    ceiling = min(cap, base * 2 ** min(attempt, 30))  # min(): no float overflow after long outages
    return random.uniform(0, ceiling)
