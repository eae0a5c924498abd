"""Which nodes of a view pass a constraint set, judged once per node *profile*.

Nodes sharing liveness, runtimes, arch, labels and devices share a profile, so a constraint set
is judged on a profile once. Per constraint set the filters keep the passing nodes
(:meth:`Filters.static`) and, for ranked scans that stop early, each node's verdict as the
scan reaches it (:meth:`Filters.passing`, over a ranking of
:class:`~fogmesh.scheduler.placement.ranking.Rankings`).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator

from fogmesh.protocol.node import Location
from fogmesh.scheduler.placement.caches import remember
from fogmesh.scheduler.placement.constraints import Constraints
from fogmesh.scheduler.placement.model import Liveness, NodeInfo
from fogmesh.scheduler.placement.ranking import Rankings

__all__ = ["Filters"]

_UNJUDGED, _PASSES, _FAILS = 0, 1, 2

_Profile = tuple[object, ...]
_Key = tuple[object, ...]


def _profile(node: NodeInfo) -> _Profile:
    facts = node.facts
    return (
        node.liveness,
        facts.arch,
        tuple(sorted(facts.runtimes)),
        tuple(sorted(facts.labels.items())),
        tuple(sorted(facts.devices)),
        # requests by properties match these, so nodes differing only in them differ
        tuple(
            sorted((d.name, d.kind, tuple(sorted(d.properties.items()))) for d in facts.device_info)
        ),
    )


class Filters:
    """The constraint caches of one view.

    ``nodes`` and ``index`` are the view's own, which it patches in place; it calls
    :meth:`refilter` for a node whose facts or liveness changed."""

    def __init__(self, nodes: list[NodeInfo], index: dict[str, int]) -> None:
        self._nodes = nodes
        self._index = index
        # nodes sharing runtimes, arch, labels and devices share a profile number
        self._profile_ids: dict[_Profile, int] = {}
        self._profiles: list[int] = [self._profile_id(n) for n in nodes]
        self._static: dict[_Key, tuple[Constraints, list[int]]] = {}
        self._profile_ok: dict[_Key, dict[int, bool]] = {}
        # per constraint set, each node's verdict: _UNJUDGED, _PASSES or _FAILS
        self._verdicts: dict[_Key, bytearray] = {}

    def refilter(self, i: int) -> None:
        """Node ``i``'s facts or liveness changed: re-judge it in every cache."""
        self._profiles[i] = self._profile_id(self._nodes[i])
        for key, (cons, found) in self._static.items():
            pos = bisect.bisect_left(found, i)
            present = pos < len(found) and found[pos] == i
            passes = self._passes(self._profile_ok.setdefault(key, {}), cons, i)
            if passes and not present:
                found.insert(pos, i)
            elif present and not passes:
                del found[pos]
        for verdicts in self._verdicts.values():
            verdicts[i] = _UNJUDGED

    def static(self, cons: Constraints) -> list[int]:
        """Indices (ascending, i.e. by node id) of the nodes whose facts pass ``cons``."""
        key = cons.key()
        cached = self._static.get(key)
        if cached is None:
            pool: Iterable[int] = range(len(self._nodes))
            if cons.pins:
                pool = sorted(self._index[p] for p in cons.pins if p in self._index)
            profiles = self._profile_ok.setdefault(key, {})
            cached = (cons, [i for i in pool if self._passes(profiles, cons, i)])
            remember(self._static, key, cached)
            self._prune()
        return cached[1]

    def passing(
        self, cons: Constraints, rankings: Rankings, source: Location | None
    ) -> Iterator[tuple[float, int]]:
        """The nodes passing ``cons`` as (cost bound, index), in the order of ``rankings``'
        ranking for ``source``; each node is judged as the scan reaches it, and remembered."""
        key = cons.key()
        verdicts = self._verdicts.get(key)
        if verdicts is None:
            verdicts = bytearray(len(self._nodes))
            remember(self._verdicts, key, verdicts)
            self._prune()
        ranking = rankings.ranked(source)
        passes, profiles = self._passes, self._profile_ok.setdefault(key, {})
        rtts = None if cons.data_source is None else rankings.latencies(cons.data_source)
        for entry in ranking.entries:
            i = entry[1]
            ok = verdicts[i]
            if ok == _UNJUDGED:
                ok = verdicts[i] = _PASSES if passes(profiles, cons, i, rtts) else _FAILS
            if ok == _PASSES:
                yield entry

    def _profile_id(self, node: NodeInfo) -> int:
        return self._profile_ids.setdefault(_profile(node), len(self._profile_ids))

    def _passes(
        self, verdicts: dict[int, bool], cons: Constraints, i: int, rtts: list[float] | None = None
    ) -> bool:
        """Whether node ``i`` passes ``cons`` (``verdicts``: its answers per profile; ``rtts``:
        the cached latencies from ``cons.data_source``, the very figures its budget is met by).
        """
        node = self._nodes[i]
        if cons.pins and cons.pins != {node.id}:
            return False
        profile = self._profiles[i]
        ok = verdicts.get(profile)
        if ok is None:
            ok = verdicts[profile] = (
                node.liveness is Liveness.ONLINE and cons.profile_reason(node) is None
            )
        if not ok:
            return False
        if not cons.needs_location:
            return True
        if rtts is not None and not cons.nears and cons.latency_budget_ms is not None:
            return node.facts.location is not None and rtts[i] <= cons.latency_budget_ms
        return cons.location_reason(node) is None

    def _prune(self) -> None:
        """Drop the per-profile answers of an evicted constraint set."""
        for key in [
            k for k in self._profile_ok if k not in self._static and k not in self._verdicts
        ]:
            del self._profile_ok[key]
