"""The bound on what a view keeps per constraint set and per data source."""

from __future__ import annotations

from typing import TypeVar

__all__ = ["MAX_CACHED", "remember"]

MAX_CACHED = 64
"""Constraint sets (and data sources) whose results the view keeps; the oldest go first."""

_K = TypeVar("_K")
_V = TypeVar("_V")


def remember(cache: dict[_K, _V], key: _K, value: _V) -> None:
    """Insert, dropping the oldest entries past ``MAX_CACHED``."""
    while len(cache) >= MAX_CACHED:
        cache.pop(next(iter(cache)))
    cache[key] = value
