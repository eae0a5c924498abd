"""Keeping the fleet healthy: workloads off offline nodes, pending ones placed, old versions
retired once their replacements run."""

from __future__ import annotations

import time

from fogmesh.protocol.events import Event, EventKind, PlacementFailedData, ReplacedData
from fogmesh.scheduler.changes import Changes
from fogmesh.scheduler.picture import Fleet, FleetPicture
from fogmesh.scheduler.placement import Plan, Planner, Want
from fogmesh.scheduler.store import AppRecord, PlacementRecord, Store

__all__ = ["Healing"]


class Healing:
    """The scheduler's healing pass over its store (:meth:`heal`).

    ``holders`` (``{tenant}/{workload}`` -> nodes holding its state's replica, the migrator's)
    is read, never written: a workload placed again goes to a holder first."""

    def __init__(
        self,
        store: Store,
        tracker: Fleet,
        picture: FleetPicture,
        holders: dict[str, list[str]],
    ) -> None:
        self.store = store
        self.tracker = tracker
        self.picture = picture
        self.holders = holders
        self._reported: set[str] = set()
        """Workloads whose failure to be placed again was published (once until placed)."""

    def heal(self, changes: Changes, *, retry_pending: bool) -> None:
        """Move workloads off offline nodes, place pending ones, retire finished old versions.

        A node cut off by its site's link is not offline: its workloads stay (the site still
        runs them), unless their component's ``partition_tolerance_s`` has run out."""
        offline = self.tracker.offline()
        moved: dict[str, str] = {}
        now = time.time()
        for key, app in self.store.doc.apps.items():
            keep = []
            for p in app.placements:
                if p.node is not None and (p.node in offline or self._cut_too_long(app, p)):
                    changes.dirty.add(p.node)
                    changes.apps.add(key)
                    if p.retiring:
                        continue
                    moved[f"{app.tenant}/{p.name}"] = p.node
                    p.node = None
                elif p.retiring and self._retired(app, p, now):
                    if p.node is not None:
                        changes.dirty.add(p.node)
                    changes.apps.add(key)
                    continue
                keep.append(p)
            app.placements = keep
        if not (moved or retry_pending):
            return
        for app in self.store.doc.apps.values():
            pending = [p for p in app.placements if p.node is None]
            if pending:
                self._place_pending(app, pending, moved, offline, changes)

    def _cut_too_long(self, app: AppRecord, p: PlacementRecord) -> bool:
        """Whether ``p``'s node has been unreachable longer than its component tolerates."""
        cut = self.tracker.unreachable_for(p.node) if p.node is not None else None
        if cut is None:
            return False
        comp = next((c for c in app.manifest.components if c.name == p.spec.component), None)
        tolerance = comp.partition_tolerance_s if comp is not None else None
        return tolerance is not None and cut >= tolerance

    def _retired(self, app: AppRecord, old: PlacementRecord, now: float) -> bool:
        for p in app.placements:
            if not p.retiring and p.name == old.name:
                if p.node is not None and self.tracker.is_running(
                    p.node, p.name, p.spec.spec_hash()
                ):
                    return True
                break
        else:
            return True
        return now >= old.retire_by

    def _place_pending(
        self,
        app: AppRecord,
        pending: list[PlacementRecord],
        moved: dict[str, str],
        offline: set[str],
        changes: Changes,
    ) -> None:
        view = self.picture.view()
        planner = Planner(view, app.manifest, app.tenant, version=str(app.revision))
        # a workload whose state a replica holds goes to a holder first (it starts from it)
        plan = Plan()
        for p in pending:
            holders = set(self.holders.get(f"{app.tenant}/{p.name}", ())) - offline
            if holders:
                others = [n.id for n in view.nodes if n.id not in holders]
                want = Want(p.spec.component, p.spec.replica)
                got = planner.place([want], exclude=sorted(offline | set(others)), partial=True)
                plan.placements.update(got.placements)
        wants = [Want(p.spec.component, p.spec.replica) for p in pending
                 if p.name not in plan.placements]  # fmt: skip
        rest = planner.place(wants, exclude=sorted(offline), partial=True)
        plan.placements.update(rest.placements)
        plan.failures.extend(rest.failures)
        for p in pending:
            tag = f"{app.tenant}/{p.name}"
            node = plan.placements.get(p.name)
            if node is not None:
                p.node = node
                changes.dirty.add(node)
                changes.apps.add(Store.key(app.tenant, app.manifest.name))
                self._reported.discard(tag)
                changes.events.append((app.tenant, Event.of(
                    EventKind.REPLACED, ReplacedData(from_=moved.get(tag), to=node),
                    tenant=app.tenant, app=app.manifest.name, workload=p.name, node=node,
                    message=f"placed again on {node}",
                )))  # fmt: skip
            elif tag not in self._reported:
                self._reported.add(tag)
                failure = next((f for f in plan.failures if f.component == p.spec.component
                                and f.replica == p.spec.replica), None)  # fmt: skip
                data = PlacementFailedData(
                    from_=moved.get(tag), reason_counts=failure.reason_counts if failure else {}
                )
                changes.events.append((app.tenant, Event.of(
                    EventKind.PLACEMENT_FAILED, data, tenant=app.tenant, app=app.manifest.name,
                    workload=p.name, message="no node can take this workload; will retry",
                )))  # fmt: skip
