"""A component's hard constraints on a node's facts, compiled once per plan.

These checks depend only on what a node *is* (facts, liveness), not on what runs on it, so the
planner evaluates them once per component and view and caches the passing nodes.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from fogmesh.protocol.manifest import AppManifest, ComponentSpec, LabelExpr, Near, parse_label_expr
from fogmesh.protocol.node import Location
from fogmesh.scheduler.placement.geo import estimated_rtt_ms, haversine_km
from fogmesh.scheduler.placement.model import Liveness, NodeInfo

__all__ = ["Constraints"]


@lru_cache(maxsize=256)
def _parsed(text: str) -> LabelExpr:
    """A label expression parsed once per text (parsed expressions are immutable): the
    apps of one fleet repeat a few expressions, and parsing them cost a tenth of a warm plan."""
    return parse_label_expr(text)


@dataclass(frozen=True, slots=True)
class Constraints:
    """Everything a node must satisfy to host one component, app-wide rules included."""

    runtime: str
    arch_sets: tuple[frozenset[str], ...]
    exprs: tuple[tuple[str, LabelExpr], ...]
    nears: tuple[Near, ...]
    devices: frozenset[str]
    pins: frozenset[str]
    data_source: Location | None
    latency_budget_ms: float | None

    @classmethod
    def of(cls, manifest: AppManifest, comp: ComponentSpec) -> Constraints:
        """Merge the app-wide and the component's placement (both must hold)."""
        both = (manifest.placement, comp.placement)
        exprs = []
        for placement in both:
            if placement.labels is not None:
                exprs.append((placement.labels, _parsed(placement.labels)))
        return cls(
            runtime=comp.runtime.value,
            arch_sets=tuple(frozenset(p.arch) for p in both if p.arch),
            exprs=tuple(exprs),
            nears=tuple(p.near for p in both if p.near is not None),
            devices=frozenset(d for p in both for d in p.devices),
            pins=frozenset(p.node for p in both if p.node is not None),
            data_source=manifest.data_source,
            latency_budget_ms=manifest.latency_budget(comp),
        )

    def key(self) -> tuple[object, ...]:
        """A hashable identity for caching the nodes that pass."""
        return (
            self.runtime,
            self.arch_sets,
            tuple(text for text, _ in self.exprs),
            self.nears,
            self.devices,
            self.pins,
            self.data_source,
            self.latency_budget_ms,
        )

    def reason(self, node: NodeInfo) -> str | None:
        """Why ``node`` cannot host the component, or None if its facts allow it."""
        if node.liveness is not Liveness.ONLINE:
            return f"node is {node.liveness.value}"
        if self.pins and self.pins != {node.id}:
            return f"pinned: component is pinned to {', '.join(sorted(self.pins))}"
        return self.profile_reason(node) or self.location_reason(node)

    def profile_reason(self, node: NodeInfo) -> str | None:
        """The checks that depend only on a node's runtimes, arch, labels and devices.

        Nodes that share those facts share the answer, so the view evaluates this once per
        distinct profile rather than once per node.
        """
        facts = node.facts
        if self.runtime not in facts.runtimes:
            return f"runtime: node has no {self.runtime} runtime"
        for arches in self.arch_sets:
            if facts.arch not in arches:
                return f"arch: {facts.arch} is not one of {', '.join(sorted(arches))}"
        for text, expr in self.exprs:
            if not expr.evaluate(facts.labels):
                return f"labels: node labels do not satisfy {text!r}"
        missing = sorted(
            r
            for r in self.devices.difference(facts.devices)
            if not any(d.answers(r) for d in facts.device_info)  # a request by properties
        )
        if missing:
            return f"devices: node lacks {', '.join(missing)}"
        return None

    @property
    def needs_location(self) -> bool:
        """Whether a node's location can rule it out (a near point or a latency budget)."""
        return bool(self.nears) or (
            self.latency_budget_ms is not None and self.data_source is not None
        )

    def location_reason(self, node: NodeInfo) -> str | None:
        """Why the node's location rules it out (too far from a point, over the budget)."""
        loc = node.facts.location
        for near in self.nears:
            if loc is None:
                return "location: node has no location and the component must be near a point"
            dist = haversine_km(near.lat, near.lon, loc.lat, loc.lon)
            if dist > near.radius_km:
                return f"location: {dist:.1f} km from the point, radius {near.radius_km:g} km"
        if self.latency_budget_ms is not None and self.data_source is not None:
            if loc is None:
                return "latency: node has no location to estimate latency from"
            src = self.data_source
            rtt = estimated_rtt_ms(haversine_km(src.lat, src.lon, loc.lat, loc.lon))
            if rtt > self.latency_budget_ms:
                return f"latency: estimated {rtt:.1f} ms over budget {self.latency_budget_ms:g} ms"
        return None
