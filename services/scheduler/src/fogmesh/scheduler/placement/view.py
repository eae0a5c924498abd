"""An indexed, read-only view of the fleet that plans are computed against.

Nodes are sorted by id; per-node capacity and free resources live in flat lists so the planner's
inner loop does arithmetic on list items rather than attribute look-ups. The view caches, per
constraint set, the nodes whose facts pass, and per data source, each node's latency estimate.
"""

from __future__ import annotations

from collections.abc import Iterable

from fogmesh.protocol.node import Location
from fogmesh.scheduler.placement.constraints import Constraints
from fogmesh.scheduler.placement.cost import NO_SOURCE_RTT_MS, UNKNOWN_RTT_MS
from fogmesh.scheduler.placement.geo import estimated_rtt_ms, haversine_km
from fogmesh.scheduler.placement.model import NodeInfo

__all__ = ["AppKey", "ClusterView"]

AppKey = tuple[str, str, str]
"""(tenant, app, version): the workloads that affinity, anti-affinity and spread look at."""


class ClusterView:
    """The fleet at one moment: nodes, their free resources and who runs where."""

    def __init__(self, nodes: Iterable[NodeInfo]) -> None:
        self.nodes: list[NodeInfo] = sorted(nodes, key=lambda n: n.id)
        self.index: dict[str, int] = {n.id: i for i, n in enumerate(self.nodes)}
        if len(self.index) != len(self.nodes):
            raise ValueError("node ids must be unique")
        self.cpu_cap: list[float] = []
        self.mem_cap: list[float] = []
        self.cpu_free: list[float] = []
        """CPU not yet requested: what a new request must fit in (CPU is compressible, so
        a busy moment does not make a node unschedulable, as in Kubernetes)."""
        self.cpu_busy: list[float] = []
        """CPU measured in use beyond the requests: it lowers a node's score, not its fit."""
        self.mem_free: list[float] = []
        """Memory free after the larger of requests and measured use (memory is not
        compressible)."""
        self.occupancy: dict[tuple[str, str, str, str], dict[int, int]] = {}
        self.app_occupancy: dict[AppKey, dict[int, int]] = {}
        # (tenant, workload name): equal names of two tenants do not clash on a node
        self.name_nodes: dict[tuple[str, str], set[int]] = {}
        for i, node in enumerate(self.nodes):
            cpu_cap = float(node.facts.cpu_count)
            mem_cap = float(node.facts.memory_bytes)
            cpu_req = sum(w.cpu for w in node.workloads)
            mem_req = sum(w.memory for w in node.workloads)
            cpu_used = mem_used = 0.0
            if node.usage is not None:
                cpu_used = node.usage.cpu_percent / 100.0 * cpu_cap
                mem_used = float(node.usage.memory_used_bytes)
            self.cpu_cap.append(cpu_cap)
            self.mem_cap.append(mem_cap)
            self.cpu_free.append(cpu_cap - cpu_req)
            self.cpu_busy.append(max(0.0, cpu_used - cpu_req))
            self.mem_free.append(mem_cap - max(mem_req, mem_used))
            for w in node.workloads:
                key = (w.tenant, w.app, w.version, w.component)
                per_node = self.occupancy.setdefault(key, {})
                per_node[i] = per_node.get(i, 0) + 1
                app_nodes = self.app_occupancy.setdefault(key[:3], {})
                app_nodes[i] = app_nodes.get(i, 0) + 1
                self.name_nodes.setdefault((w.tenant, w.name), set()).add(i)
        self._static: dict[tuple[object, ...], list[int]] = {}
        self._latency: dict[Location | None, list[float]] = {}

    def __len__(self) -> int:
        return len(self.nodes)

    def static_candidates(self, cons: Constraints) -> list[int]:
        """Indices (ascending, i.e. by node id) of the nodes whose facts pass ``cons``."""
        key = cons.key()
        found = self._static.get(key)
        if found is None:
            if cons.pins:
                pool = sorted(self.index[p] for p in cons.pins if p in self.index)
            else:
                pool = list(range(len(self.nodes)))
            found = [i for i in pool if cons.reason(self.nodes[i]) is None]
            self._static[key] = found
        return found

    def latencies(self, source: Location | None) -> list[float]:
        """Each node's estimated round trip (ms) from ``source``."""
        found = self._latency.get(source)
        if found is None:
            if source is None:
                found = [NO_SOURCE_RTT_MS] * len(self.nodes)
            else:
                found = []
                for node in self.nodes:
                    loc = node.facts.location
                    if loc is None:
                        found.append(UNKNOWN_RTT_MS)
                    else:
                        dist = haversine_km(source.lat, source.lon, loc.lat, loc.lon)
                        found.append(estimated_rtt_ms(dist))
            self._latency[source] = found
        return found
