"""The fleet as a plan sees it: the tracker's nodes with the store's placements on them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from fogmesh.protocol.manifest import AppManifest
from fogmesh.scheduler.placement import ClusterView, NodeInfo, PlacedWorkload, Plan
from fogmesh.scheduler.specs import make_spec
from fogmesh.scheduler.store import AppRecord, PlacementRecord, Store

__all__ = ["Fleet", "FleetPicture", "placed", "placement_records"]


class Fleet(Protocol):
    """What the operations need to know of the nodes (:class:`~fogmesh.scheduler.nodes.
    NodeTracker` in the service)."""

    def offline(self) -> set[str]:
        """Ids of the nodes that count as offline now."""
        ...

    def is_running(self, node_id: str, workload: str, spec_hash: str) -> bool:
        """Whether the node reports the workload running with that spec."""
        ...

    def unreachable_for(self, node_id: str) -> float | None:
        """Seconds the node has been cut off with its site's link (None: it is not)."""
        ...

    def infos(self, placed: dict[str, list[PlacedWorkload]]) -> Iterable[NodeInfo]:
        """Every node the planner may use, with the workloads ``placed`` on it."""
        ...


def placed(
    app: AppRecord, placements: Iterable[PlacementRecord], revision: int | None = None
) -> list[tuple[str, PlacedWorkload]]:
    """``placements`` of ``app`` that have a node, as the planner sees them (at their own
    revision, or at ``revision``)."""
    out = []
    for p in placements:
        if p.node is None:
            continue
        comp = app.manifest.component(p.spec.component)
        out.append((p.node, PlacedWorkload(
            p.spec.name, app.tenant, app.manifest.name, p.spec.component,
            comp.cpu_request, comp.memory_request,
            str(p.revision if revision is None else revision), tuple(p.spec.devices),
        )))  # fmt: skip
    return out


def placement_records(
    tenant: str, manifest: AppManifest, plan: Plan, rev: int
) -> list[PlacementRecord]:
    """A record, at revision ``rev``, of each replica of ``manifest`` that ``plan`` places."""
    out = []
    for comp in manifest.components:
        for replica in range(comp.replicas):
            spec = make_spec(tenant, manifest, comp, replica)
            if spec.name in plan.placements:
                out.append(
                    PlacementRecord(spec=spec, node=plan.placements[spec.name], revision=rev)
                )
    return out


class FleetPicture:
    """Views of the fleet for plans: one :class:`ClusterView` patched to each request's
    picture of the fleet, never rebuilt for one."""

    def __init__(self, store: Store, tracker: Fleet) -> None:
        self.store = store
        self.tracker = tracker
        self._view = ClusterView(())

    def view(
        self, *, skip: str | None = None, extra: Iterable[tuple[str, PlacedWorkload]] = ()
    ) -> ClusterView:
        """The fleet with every placed workload (except those of app key ``skip``), plus
        ``extra`` (node, workload) pairs: an app as a plan would leave it."""
        on_nodes: dict[str, list[PlacedWorkload]] = {}
        for key, app in self.store.doc.apps.items():
            if key == skip:
                continue
            for node, workload in placed(app, app.placements):
                on_nodes.setdefault(node, []).append(workload)
        for node, workload in extra:
            on_nodes.setdefault(node, []).append(workload)
        return self._view.sync(self.tracker.infos(on_nodes))
