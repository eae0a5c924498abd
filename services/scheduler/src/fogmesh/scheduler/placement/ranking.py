"""Every node of a view ranked by a lower bound of its cost, for scans that stop early
(:meth:`fogmesh.scheduler.placement.view.ClusterView.candidates`), and per data source each
node's latency estimate that the bound and the cost start from."""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from fogmesh.protocol.node import Location
from fogmesh.scheduler.placement.caches import remember
from fogmesh.scheduler.placement.cost import NO_SOURCE_RTT_MS, UNKNOWN_RTT_MS
from fogmesh.scheduler.placement.geo import estimated_rtt_ms, haversine_km
from fogmesh.scheduler.placement.model import NodeInfo

__all__ = ["Ranking", "Rankings"]

_RESORT_SHARE = 32
"""A ranking read after a sync that moved more than one node in this many is sorted afresh."""


class Ranking:
    """Every node sorted by (cost bound, index), with each node's bound for patching, and the
    nodes whose bound may have moved since (patched when the ranking is next read)."""

    __slots__ = ("bounds", "entries", "pending")

    def __init__(self, bounds: list[float]) -> None:
        self.bounds = bounds
        self.pending: set[int] = set()
        self.sort()

    def sort(self) -> None:
        """Order every node afresh: by bound, ties by index (a stable sort of the indices)."""
        bounds = self.bounds
        self.entries = [(bounds[i], i) for i in sorted(range(len(bounds)), key=bounds.__getitem__)]

    def place(self, i: int, bound: float) -> None:
        """Move node ``i`` to where ``bound`` puts it."""
        entries = self.entries
        del entries[bisect.bisect_left(entries, (self.bounds[i], i))]
        self.bounds[i] = bound
        bisect.insort(entries, (bound, i))


class Rankings:
    """Per data source, every node's latency estimate and its :class:`Ranking`, kept for the
    last ``MAX_CACHED`` sources.

    ``nodes`` is the view's own list, which it patches in place; ``bound(i, latency)`` is node
    ``i``'s cost bound with that latency. The view calls :meth:`relocate` for a node that
    moved and :meth:`rerank` for one whose bound may have."""

    def __init__(self, nodes: list[NodeInfo], bound: Callable[[int, float], float]) -> None:
        self._nodes = nodes
        self._bound = bound
        self._latency: dict[Location | None, list[float]] = {}
        self._ranking: dict[Location | None, Ranking] = {}
        self._moved: set[int] | None = None
        """Within :meth:`deferred`: the nodes whose ranking is still to be fixed."""

    def latencies(self, source: Location | None) -> list[float]:
        """Each node's estimated round trip (ms) from ``source``."""
        found = self._latency.get(source)
        if found is None:
            found = [self._latency_of(source, node) for node in self._nodes]
            remember(self._latency, source, found)
            self._prune()
        return found

    def relocate(self, i: int) -> None:
        """Node ``i``'s location changed: its latency from every kept source."""
        for source, rtts in self._latency.items():
            rtts[i] = self._latency_of(source, self._nodes[i])

    def rerank(self, i: int) -> None:
        """Node ``i``'s bound may have moved: re-place it in each ranking (within
        :meth:`deferred`, each ranking is told once all nodes are patched, and patched when
        next read: a request reads the one of its app's data source)."""
        if self._moved is not None:
            self._moved.add(i)
            return
        for source, ranking in self._ranking.items():
            ranking.place(i, self._bound(i, self._latency[source][i]))

    @contextmanager
    def deferred(self) -> Iterator[None]:
        """Reranks within are told to each ranking once, on leaving."""
        self._moved = set()
        try:
            yield
        finally:
            moved, self._moved = self._moved, None
            for ranking in self._ranking.values():
                ranking.pending |= moved

    def ranked(self, source: Location | None) -> Ranking:
        """The ranking for ``source``, built or patched up to date."""
        ranking = self._ranking.get(source)
        if ranking is None:
            latency = self.latencies(source)
            ranking = Ranking([self._bound(i, latency[i]) for i in range(len(self._nodes))])
            self._ranking[source] = ranking
        elif ranking.pending:
            latency = self._latency[source]
            if len(ranking.pending) * _RESORT_SHARE < len(self._nodes):
                for i in ranking.pending:
                    ranking.place(i, self._bound(i, latency[i]))
            else:  # so many moved (every heartbeat since the last request) that a sort is cheaper
                for i in ranking.pending:
                    ranking.bounds[i] = self._bound(i, latency[i])
                ranking.sort()
            ranking.pending.clear()
        return ranking

    @staticmethod
    def _latency_of(source: Location | None, node: NodeInfo) -> float:
        if source is None:
            return NO_SOURCE_RTT_MS
        loc = node.facts.location
        if loc is None:
            return UNKNOWN_RTT_MS
        return estimated_rtt_ms(haversine_km(source.lat, source.lon, loc.lat, loc.lon))

    def _prune(self) -> None:
        """Drop the ranking of an evicted data source."""
        for source in [k for k in self._ranking if k not in self._latency]:
            del self._ranking[source]
