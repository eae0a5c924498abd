"""Which of a bus's subscription filters a topic matches, worked out once per topic.

A service's bus holds a handful of filters and sees the same topics again and again (a
registry: four channels of every node). Matching each message against every filter with
aiomqtt's ``Topic.matches`` cost about 90 microseconds a message with ten filters on this
project's 2-core machine, more than validating the payload; the index splits each filter once,
matches a topic it has not seen with plain level comparisons, and remembers the answer (up to
``limit`` topics; then it starts afresh, so a service fed unbounded topic names stays bounded).

Matching follows aiomqtt's ``Topic.matches``, the bus's rule before this index: ``+`` is one
level, ``#`` the rest (the parent level included), and a ``$share/{group}/`` prefix is ignored.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["FilterIndex", "filter_matches"]

DEFAULT_LIMIT = 65_536
"""Topics remembered: 10,000 nodes' four channels fit."""


def _levels(topic_filter: str) -> tuple[str, ...]:
    levels = topic_filter.split("/")
    if levels[0] == "$share":
        levels = levels[2:]  # $share/{group}/{filter}: the group is no part of the match
    return tuple(levels)


def filter_matches(topic_filter: str, topic: str) -> bool:
    """Whether ``topic`` matches ``topic_filter`` (the rule of the module docstring)."""
    return _match(_levels(topic_filter), topic.split("/"))


def _match(levels: tuple[str, ...], topic: list[str]) -> bool:
    for i, level in enumerate(levels):
        if level == "#":
            return True
        if i >= len(topic) or (level != "+" and level != topic[i]):
            return False
    return len(levels) == len(topic)


class FilterIndex:
    """The filters of a bus, and the ones each topic seen so far matches (in filter order)."""

    def __init__(self, filters: Iterable[str] = (), *, limit: int = DEFAULT_LIMIT) -> None:
        self.limit = limit
        self._filters: tuple[tuple[str, tuple[str, ...]], ...] = ()
        self._seen: dict[str, tuple[str, ...]] = {}
        self.update(filters)

    def update(self, filters: Iterable[str]) -> None:
        """Replace the filters (each answer remembered so far is forgotten)."""
        self._filters = tuple((f, _levels(f)) for f in filters)
        self._seen = {}

    def match(self, topic: str) -> tuple[str, ...]:
        """The filters ``topic`` matches, in the order they were given."""
        found = self._seen.get(topic)
        if found is None:
            parts = topic.split("/")
            found = tuple(f for f, levels in self._filters if _match(levels, parts))
            if len(self._seen) >= self.limit:
                self._seen = {}
            self._seen[topic] = found
        return found
