"""An indexed view of the fleet that plans are computed against, patched as the fleet changes.

Nodes are sorted by id; per-node capacity and free resources live in flat lists so the planner's
inner loop does arithmetic on list items rather than attribute look-ups. The view caches, per
constraint set, the nodes whose facts pass (evaluated once per distinct node *profile*: runtimes,
arch, labels and devices), per data source each node's latency estimate and every node ranked
by a lower bound of its cost (see :meth:`ClusterView.candidates`, which judges constraints
lazily, so a constraint set never seen before costs only the nodes a decision looks at). The
constraint caches are :class:`~fogmesh.scheduler.placement.filters.Filters`, the latencies and
rankings :class:`~fogmesh.scheduler.placement.ranking.Rankings`; the view owns the nodes and
their resources and tells both what changed.

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

import dataclasses
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from fogmesh.protocol.node import Location
from fogmesh.scheduler.placement.caches import MAX_CACHED
from fogmesh.scheduler.placement.constraints import Constraints
from fogmesh.scheduler.placement.cost import MIN_REMAINING
from fogmesh.scheduler.placement.filters import Filters
from fogmesh.scheduler.placement.model import NodeInfo, PlacedWorkload
from fogmesh.scheduler.placement.ranking import Rankings

__all__ = ["MAX_CACHED", "AppKey", "ClusterView"]

AppKey = tuple[str, str, str]
"""(tenant, app, version): the workloads that affinity, anti-affinity and spread look at."""

_K = TypeVar("_K")


def _bump(table: dict[_K, dict[int, int]], key: _K, i: int, delta: int) -> None:
    per_node = table.setdefault(key, {})
    left = per_node.get(i, 0) + delta
    if left > 0:
        per_node[i] = left
    else:
        per_node.pop(i, None)
        if not per_node:
            del table[key]


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
        self._filters = Filters(self.nodes, self.index)
        self._rankings = Rankings(self.nodes, self._bound)
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
            self._refilter(i, old.facts.location != node.facts.location)
        elif before != (self.cpu_free[i], self.cpu_busy[i], self.mem_free[i]):
            # the bound counts measured use, so a heartbeat that moves it re-ranks the node
            self._rankings.rerank(i)

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
        with self._rankings.deferred():  # the rankings are told once, after every node
            for node_id, node in fresh.items():
                old = self.nodes[self.index[node_id]]
                if (
                    old.liveness is not node.liveness
                    or (old.usage is not node.usage and old.usage != node.usage)
                    or (old.facts is not node.facts and old.facts != node.facts)
                    or old.workloads != node.workloads
                ):
                    self.upsert(node)
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
        self._rankings.rerank(i)

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
        self._rankings.rerank(i)

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
            self._rankings.relocate(i)
        self._filters.refilter(i)
        self._rankings.rerank(i)

    # --- queries -------------------------------------------------------------------------------

    def static_candidates(self, cons: Constraints) -> list[int]:
        """Indices (ascending, i.e. by node id) of the nodes whose facts pass ``cons``."""
        return self._filters.static(cons)

    def latencies(self, source: Location | None) -> list[float]:
        """Each node's estimated round trip (ms) from ``source``."""
        return self._rankings.latencies(source)

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
        return self._filters.passing(cons, self._rankings, source)
