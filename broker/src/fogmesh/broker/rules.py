"""Bridge topic rules: which filter to subscribe on each side, and how a topic is rewritten."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from fogmesh.broker.config import RuleSpec
from fogmesh.broker.topicmatch import matches

__all__ = ["Route", "routes_from"]

Side = Literal["local", "remote"]


@dataclass(frozen=True, slots=True)
class Route:
    """One direction of one rule.

    Subscribe ``source_filter`` on ``source``; swap ``source_prefix`` for ``dest_prefix``.
    """

    source: Side
    source_filter: str
    source_prefix: str
    dest_prefix: str
    qos: int
    dest_filter: str = ""
    paths: frozenset[str] | None = None
    """The link's paths this route may use (None: every path)."""

    def uses(self, path: str) -> bool:
        """Whether this route may cross on path ``path``."""
        return self.paths is None or path in self.paths

    def map(self, topic: str) -> str | None:
        """The destination topic for ``topic``, or None if this route does not carry it."""
        if not matches(topic, self.source_filter):
            return None
        return self.dest_prefix + topic[len(self.source_prefix) :]


def routes_from(rules: list[RuleSpec]) -> list[Route]:
    """Expand rules into routes: ``out`` goes local->remote, ``in`` remote->local, ``both`` both."""
    routes: list[Route] = []
    for rule in rules:
        paths = None if rule.paths is None else frozenset(rule.paths)
        if rule.direction in ("out", "both"):
            routes.append(
                Route(
                    "local",
                    rule.local_prefix + rule.pattern,
                    rule.local_prefix,
                    rule.remote_prefix,
                    rule.qos,
                    rule.remote_prefix + rule.pattern,
                    paths,
                )
            )
        if rule.direction in ("in", "both"):
            routes.append(
                Route(
                    "remote",
                    rule.remote_prefix + rule.pattern,
                    rule.remote_prefix,
                    rule.local_prefix,
                    rule.qos,
                    rule.local_prefix + rule.pattern,
                    paths,
                )
            )
    return routes
