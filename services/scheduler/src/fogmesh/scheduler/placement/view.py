"""An indexed view of the fleet that plans are computed against, patched as the fleet changes.

Nodes are sorted by id; per-node capacity and free resources live in flat lists so the planner's
inner loop does arithmetic on list items rather than attribute look-ups. The view caches, per
constraint set, the nodes whose facts pass (evaluated once per distinct node *profile*: runtimes,
arch, labels and devices), per data source each node's latency estimate and every node ranked
by a lower bound of its cost (see :meth:`ClusterView.candidates`, which judges constraints
lazily, so a constraint set never seen before costs only the nodes a decision looks at).

The view is kept current in place: :meth:`ClusterView.upsert` for a node's new facts, liveness
or usage, :meth:`ClusterView.add_workload` / :meth:`ClusterView.remove_workload` for placements.
Each patches that node's entries and every cache, so the view always equals one built from
scratch from the same nodes (``tests/scheduler/test_view_incremental.py``). Only a node id never
seen before (or one removed) re-indexes the whole view. Within :meth:`ClusterView.sync` (a
request's picture of the fleet) the rankings are only told which nodes' bounds moved and are
patched when next read, so a request pays for the ranking it reads, not for every kept one
(``tests/scheduler/test_view_rankings.py``).
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from fogmesh.protocol.node import Location
from fogmesh.scheduler.placement.constraints import Constraints
from fogmesh.scheduler.placement.cost import MIN_REMAINING, NO_SOURCE_RTT_MS, UNKNOWN_RTT_MS
from fogmesh.scheduler.placement.geo import estimated_rtt_ms, haversine_km
from fogmesh.scheduler.placement.model import Liveness, NodeInfo, PlacedWorkload
from fogmesh.scheduler.placement.ranking import Ranking

__all__ = ["MAX_CACHED", "AppKey", "ClusterView"]

AppKey = tuple[str, str, str]
"""(tenant, app, version): the workloads that affinity, anti-affinity and spread look at."""

MAX_CACHED = 64
"""Constraint sets (and data sources) whose results the view keeps; the oldest go first."""

_UNJUDGED, _PASSES, _FAILS = 0, 1, 2
_RESORT_SHARE = 32
"""A ranking read after a sync that moved more than one node in this many is sorted afresh."""

_Profile = tuple[object, ...]
_Key = tuple[object, ...]
_K = TypeVar("_K")
_V = TypeVar("_V")


def _remember(cache: dict[_K, _V], key: _K, value: _V) -> None:
    """Insert, dropping the oldest entries past ``MAX_CACHED``."""
    while len(cache) >= MAX_CACHED:
        cache.pop(next(iter(cache)))
    cache[key] = value


def _bump(table: dict[_K, dict[int, int]], key: _K, i: int, delta: int) -> None:
    per_node = table.setdefault(key, {})
    left = per_node.get(i, 0) + delta
    if left > 0:
        per_node[i] = left
    else:
        per_node.pop(i, None)
        if not per_node:
            del table[key]


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


class ClusterView:
    """The fleet at one moment: nodes, their free resources and who runs where."""

    def __init__(self, nodes: Iterable[NodeInfo]) -> None:
        self._build(list(nodes))

    def _build(self, nodes: list[NodeInfo]) -> None:
        self.nodes: list[NodeInfo] = sorted(nodes, key=lambda n: n.id)
        self.index: dict[str, int] = {n.id: i for i, n in enumerate(self.nodes)}
        if len(self.index) != len(self.nodes):
            raise ValueError("node ids must be unique")
        count = len(self.nodes)
        self.cpu_cap: list[float] = [0.0] * count
        self.mem_cap: list[float] = [0.0] * count
        self.cpu_free: list[float] = [0.0] * count
        """CPU not yet requested: what a new request must fit in (CPU is compressible, so
        a busy moment does not make a node unschedulable, as in Kubernetes)."""
        self.cpu_busy: list[float] = [0.0] * count
        """CPU measured in use beyond the requests: it lowers a node's score, not its fit."""
        self.mem_free: list[float] = [0.0] * count
        """Memory free after the larger of requests and measured use (memory is not
        compressible)."""
        self.cpu_req: list[float] = [0.0] * count
        self.mem_req: list[float] = [0.0] * count
        self.occupancy: dict[tuple[str, str, str, str], dict[int, int]] = {}
        self.app_occupancy: dict[AppKey, dict[int, int]] = {}
        # (tenant, workload name): equal names of two tenants do not clash on a node
        self.name_nodes: dict[tuple[str, str], set[int]] = {}
        # nodes sharing runtimes, arch, labels and devices share a profile number
        self._profile_ids: dict[_Profile, int] = {}
        self._profiles: list[int] = [self._profile_id(n) for n in self.nodes]
        self._static: dict[_Key, tuple[Constraints, list[int]]] = {}
        self._profile_ok: dict[_Key, dict[int, bool]] = {}
        self._latency: dict[Location | None, list[float]] = {}
        self._ranking: dict[Location | None, Ranking] = {}
        # per constraint set, each node's verdict: _UNJUDGED, _PASSES or _FAILS
        self._verdicts: dict[_Key, bytearray] = {}
        self._moved: set[int] | None = None
        """While a :meth:`sync` patches nodes: those whose ranking is still to be fixed."""
        for i, node in enumerate(self.nodes):
            self.cpu_req[i] = sum(w.cpu for w in node.workloads)
            self.mem_req[i] = float(sum(w.memory for w in node.workloads))
            for w in node.workloads:
                self._count(i, w, 1)
            self._resources(i)

    def __len__(self) -> int:
        return len(self.nodes)

    # --- patching ------------------------------------------------------------------------------

    def upsert(self, node: NodeInfo) -> None:
        """Take ``node``'s current facts, liveness, usage and workloads (a new id re-indexes)."""
        i = self.index.get(node.id)
        if i is None:
            self._build([*self.nodes, node])
            return
        old = self.nodes[i]
        self.nodes[i] = node  # first: removing old names looks at what the node runs now
        for w in old.workloads:
            self._count(i, w, -1)
        for w in node.workloads:
            self._count(i, w, 1)
        before = (self.cpu_free[i], self.cpu_busy[i], self.mem_free[i])
        self.cpu_req[i] = sum(w.cpu for w in node.workloads)
        self.mem_req[i] = float(sum(w.memory for w in node.workloads))
        self._resources(i)
        if old.liveness is not node.liveness or (
            old.facts is not node.facts and old.facts != node.facts
        ):
            self._profiles[i] = self._profile_id(node)
            self._refilter(i, old.facts.location != node.facts.location)
        elif before != (self.cpu_free[i], self.cpu_busy[i], self.mem_free[i]):
            # the bound counts measured use, so a heartbeat that moves it re-ranks the node
            self._rerank(i)

    def sync(self, nodes: Iterable[NodeInfo]) -> ClusterView:
        """Become the view of ``nodes``, patching only the nodes that differ; returns self.

        A node differs when its facts, liveness, usage or workloads do; comparing them costs
        far less than rebuilding (facts and usage are usually the very objects seen last time).
        Only a different set of node ids re-indexes the view.
        """
        fresh = {n.id: n for n in nodes}
        if fresh.keys() != self.index.keys():
            self._build(list(fresh.values()))
            return self
        self._moved = set()  # the rankings are told once, after every node
        try:
            for node_id, node in fresh.items():
                old = self.nodes[self.index[node_id]]
                if (
                    old.liveness is not node.liveness
                    or (old.usage is not node.usage and old.usage != node.usage)
                    or (old.facts is not node.facts and old.facts != node.facts)
                    or old.workloads != node.workloads
                ):
                    self.upsert(node)
        finally:
            moved, self._moved = self._moved, None
            for ranking in self._ranking.values():
                ranking.pending |= moved
        return self

    def remove(self, node_id: str) -> None:
        """Forget a node (re-indexes the view)."""
        if node_id in self.index:
            self._build([n for n in self.nodes if n.id != node_id])

    def add_workload(self, node_id: str, workload: PlacedWorkload) -> None:
        """A workload placed on ``node_id``: its requests are taken at once."""
        i = self.index[node_id]
        node = self.nodes[i]
        # a copy: the caller's NodeInfo (maybe in another view) is left as it was
        self.nodes[i] = dataclasses.replace(node, workloads=[*node.workloads, workload])
        self.cpu_req[i] += workload.cpu
        self.mem_req[i] += float(workload.memory)
        self._count(i, workload, 1)
        self._resources(i)
        self._rerank(i)

    def remove_workload(self, node_id: str, workload: PlacedWorkload) -> None:
        """A workload gone from ``node_id`` (one equal to ``workload``): its requests are freed."""
        i = self.index[node_id]
        node = self.nodes[i]
        kept = list(node.workloads)
        kept.remove(workload)
        self.nodes[i] = dataclasses.replace(node, workloads=kept)
        # summed afresh so that repeated add/remove leave no rounding drift behind
        self.cpu_req[i] = sum(w.cpu for w in kept)
        self.mem_req[i] = float(sum(w.memory for w in kept))
        self._count(i, workload, -1)
        self._resources(i)
        self._rerank(i)

    @contextmanager
    def adjusted(
        self,
        *,
        remove: Iterable[tuple[str, PlacedWorkload]] = (),
        add: Iterable[tuple[str, PlacedWorkload]] = (),
    ) -> Iterator[ClusterView]:
        """The view with ``remove`` taken out and ``add`` put in, undone on leaving.

        What-if plans (an update beside or without its old version) use this instead of a
        copy of the whole fleet. Pairs naming unknown nodes are ignored, as a rebuilt view
        would not hold them either.
        """
        removed = [(n, w) for n, w in remove if n in self.index]
        added = [(n, w) for n, w in add if n in self.index]
        done_r: list[tuple[str, PlacedWorkload]] = []
        done_a: list[tuple[str, PlacedWorkload]] = []
        try:
            for n, w in removed:
                self.remove_workload(n, w)
                done_r.append((n, w))
            for n, w in added:
                self.add_workload(n, w)
                done_a.append((n, w))
            yield self
        finally:
            for n, w in reversed(done_a):
                self.remove_workload(n, w)
            for n, w in reversed(done_r):
                self.add_workload(n, w)

    def _count(self, i: int, w: PlacedWorkload, delta: int) -> None:
        _bump(self.occupancy, (w.tenant, w.app, w.version, w.component), i, delta)
        _bump(self.app_occupancy, (w.tenant, w.app, w.version), i, delta)
        name = (w.tenant, w.name)
        if delta > 0:
            self.name_nodes.setdefault(name, set()).add(i)
        elif not any(o.tenant == w.tenant and o.name == w.name for o in self.nodes[i].workloads):
            hosts = self.name_nodes.get(name)
            if hosts is not None:
                hosts.discard(i)
                if not hosts:
                    del self.name_nodes[name]

    def _resources(self, i: int) -> None:
        node = self.nodes[i]
        cpu_cap = float(node.facts.cpu_count)
        mem_cap = float(node.facts.memory_bytes)
        cpu_req, mem_req = self.cpu_req[i], self.mem_req[i]
        cpu_used = mem_used = 0.0
        if node.usage is not None:
            cpu_used = node.usage.cpu_percent / 100.0 * cpu_cap
            mem_used = float(node.usage.memory_used_bytes)
        self.cpu_cap[i] = cpu_cap
        self.mem_cap[i] = mem_cap
        self.cpu_free[i] = cpu_cap - cpu_req
        self.cpu_busy[i] = max(0.0, cpu_used - cpu_req)
        self.mem_free[i] = mem_cap - max(mem_req, mem_used)

    def _refilter(self, i: int, moved: bool) -> None:
        """Node ``i``'s facts or liveness changed: re-judge it in every cache."""
        if moved:
            for source, rtts in self._latency.items():
                rtts[i] = self._latency_of(source, self.nodes[i])
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
        self._rerank(i)

    def _rerank(self, i: int) -> None:
        """Node ``i``'s bound may have moved: re-place it in each ranking (during a
        :meth:`sync`, each ranking is told once all nodes are patched, and patched when next
        read: a request reads the one of its app's data source)."""
        if self._moved is not None:
            self._moved.add(i)
            return
        for source, ranking in self._ranking.items():
            ranking.place(i, self._bound(i, self._latency[source][i]))

    def _ranked(self, source: Location | None) -> Ranking:
        """The ranking for ``source``, built or patched up to date."""
        ranking = self._ranking.get(source)
        if ranking is None:
            latency = self.latencies(source)
            ranking = Ranking([self._bound(i, latency[i]) for i in range(len(self.nodes))])
            self._ranking[source] = ranking
        elif ranking.pending:
            latency = self._latency[source]
            if len(ranking.pending) * _RESORT_SHARE < len(self.nodes):
                for i in ranking.pending:
                    ranking.place(i, self._bound(i, latency[i]))
            else:  # so many moved (every heartbeat since the last request) that a sort is cheaper
                for i in ranking.pending:
                    ranking.bounds[i] = self._bound(i, latency[i])
                ranking.sort()
            ranking.pending.clear()
        return ranking

    # --- queries -------------------------------------------------------------------------------

    def static_candidates(self, cons: Constraints) -> list[int]:
        """Indices (ascending, i.e. by node id) of the nodes whose facts pass ``cons``."""
        key = cons.key()
        cached = self._static.get(key)
        if cached is None:
            pool: Iterable[int] = range(len(self.nodes))
            if cons.pins:
                pool = sorted(self.index[p] for p in cons.pins if p in self.index)
            profiles = self._profile_ok.setdefault(key, {})
            cached = (cons, [i for i in pool if self._passes(profiles, cons, i)])
            _remember(self._static, key, cached)
            self._prune()
        return cached[1]

    def _profile_id(self, node: NodeInfo) -> int:
        return self._profile_ids.setdefault(_profile(node), len(self._profile_ids))

    def _passes(
        self, verdicts: dict[int, bool], cons: Constraints, i: int, rtts: list[float] | None = None
    ) -> bool:
        """Whether node ``i`` passes ``cons`` (``verdicts``: its answers per profile; ``rtts``:
        the cached latencies from ``cons.data_source``, the very figures its budget is met by).
        """
        node = self.nodes[i]
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

    def latencies(self, source: Location | None) -> list[float]:
        """Each node's estimated round trip (ms) from ``source``."""
        found = self._latency.get(source)
        if found is None:
            found = [self._latency_of(source, node) for node in self.nodes]
            _remember(self._latency, source, found)
            self._prune()
        return found

    @staticmethod
    def _latency_of(source: Location | None, node: NodeInfo) -> float:
        if source is None:
            return NO_SOURCE_RTT_MS
        loc = node.facts.location
        if loc is None:
            return UNKNOWN_RTT_MS
        return estimated_rtt_ms(haversine_km(source.lat, source.lon, loc.lat, loc.lon))

    def _bound(self, i: int, latency: float) -> float:
        """A lower bound of node ``i``'s cost for any request: the node's cost with a request of
        nothing (a request only lowers the free fractions) and spread 1 (it is at least 1).

        Measured use counts, as in the cost, so the bound is tight for small requests and a
        scan stops after few nodes; every step is the cost's own arithmetic without the
        request, so in floating point too no cost is below it."""
        cap = self.cpu_cap[i]
        cpu = (self.cpu_free[i] - self.cpu_busy[i]) / cap if cap > 0 else 0.0
        cap = self.mem_cap[i]
        mem = self.mem_free[i] / cap if cap > 0 else 0.0
        return latency / max(min(cpu, mem), MIN_REMAINING)

    def candidates(self, cons: Constraints, source: Location | None) -> Iterator[tuple[float, int]]:
        """The nodes passing ``cons`` as (cost bound, index), by ascending bound then index.

        No node's cost for a workload from ``source`` is below its bound, so a scan in this order
        may stop at the first bound above the best cost found. Constraints are judged as the
        scan reaches each node (and remembered), so a scan that stops early judges few nodes.
        """
        key = cons.key()
        verdicts = self._verdicts.get(key)
        if verdicts is None:
            verdicts = bytearray(len(self.nodes))
            _remember(self._verdicts, key, verdicts)
            self._prune()
        ranking = self._ranked(source)
        passes, profiles = self._passes, self._profile_ok.setdefault(key, {})
        rtts = None if cons.data_source is None else self.latencies(cons.data_source)
        for entry in ranking.entries:
            i = entry[1]
            ok = verdicts[i]
            if ok == _UNJUDGED:
                ok = verdicts[i] = _PASSES if passes(profiles, cons, i, rtts) else _FAILS
            if ok == _PASSES:
                yield entry

    def _prune(self) -> None:
        """Drop what was derived from an evicted constraint set or data source."""
        for key in [
            k for k in self._profile_ok if k not in self._static and k not in self._verdicts
        ]:
            del self._profile_ok[key]
        for source in [k for k in self._ranking if k not in self._latency]:
            del self._ranking[source]
