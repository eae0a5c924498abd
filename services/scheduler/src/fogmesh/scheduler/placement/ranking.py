"""Every node of a view ranked by a lower bound of its cost, for scans that stop early
(:meth:`fogmesh.scheduler.placement.view.ClusterView.candidates`)."""

from __future__ import annotations

import bisect

__all__ = ["Ranking"]


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
