"""What the scheduler does to its store: deploy, update, scale, delete, and heal the fleet.

Each operation changes :class:`~fogmesh.scheduler.store.Store` in memory, or raises
:class:`~fogmesh.bus.Refusal` and changes nothing, and returns the nodes whose desired state
changed; the service saves the store and publishes those nodes' desired states.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from fogmesh.bus import Refusal
from fogmesh.protocol.errors import ErrorCode
from fogmesh.protocol.events import (
    AppEventData,
    Event,
    EventKind,
    PlacementFailedData,
    ReplacedData,
)
from fogmesh.protocol.manifest import AppManifest
from fogmesh.protocol.migration import MoveWorkload, ReplicaHolders
from fogmesh.scheduler.config import SchedulerConfig
from fogmesh.scheduler.placement import (
    ClusterView,
    NodeInfo,
    PlacedWorkload,
    Plan,
    Planner,
    Want,
    all_wants,
    workload_name,
)
from fogmesh.scheduler.specs import make_spec, manifest_totals
from fogmesh.scheduler.store import MAX_MOVES, AppRecord, MoveRecord, PlacementRecord, Store

__all__ = ["Changes", "Fleet", "Operations"]

MAX_HOLDERS = 10_000
"""Workloads whose replicas' holders the scheduler remembers (the migrator's, in memory)."""


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


@dataclass(slots=True)
class Changes:
    """Nodes whose desired state must be republished, apps whose record must be (key
    tenant/app), and events to publish (tenant, event)."""

    dirty: set[str] = field(default_factory=set)
    apps: set[str] = field(default_factory=set)
    events: list[tuple[str, Event]] = field(default_factory=list)


def _unschedulable(plan: Plan) -> Refusal:
    failure = plan.failures[0]
    counts = ", ".join(f"{k}: {v}" for k, v in sorted(failure.reason_counts.items()))
    return Refusal(
        ErrorCode.UNSCHEDULABLE,
        f"no node for {failure.component} replica {failure.replica} ({counts})",
        details=failure.model_dump(mode="json"),
    )


class Operations:
    """The scheduler's decisions, on its store and its view of the nodes."""

    def __init__(self, store: Store, tracker: Fleet, config: SchedulerConfig) -> None:
        self.store = store
        self.tracker = tracker
        self.config = config
        self._reported: set[str] = set()
        self.holders: dict[str, list[str]] = {}
        """``{tenant}/{workload}`` -> the nodes holding its state's replica (the migrator's)."""
        # patched to each request's picture of the fleet, never rebuilt for one
        self._view = ClusterView(())

    # --- helpers -------------------------------------------------------------------------------

    def view(
        self, *, skip: str | None = None, extra: Iterable[tuple[str, PlacedWorkload]] = ()
    ) -> ClusterView:
        """The fleet with every placed workload (except those of app key ``skip``), plus
        ``extra`` (node, workload) pairs: an app as a plan would leave it."""
        placed: dict[str, list[PlacedWorkload]] = {}
        for key, app in self.store.doc.apps.items():
            if key == skip:
                continue
            for node, workload in self._placed(app, app.placements):
                placed.setdefault(node, []).append(workload)
        for node, workload in extra:
            placed.setdefault(node, []).append(workload)
        return self._view.sync(self.tracker.infos(placed))

    @staticmethod
    def _placed(
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

    def get(self, tenant: str, app: str) -> AppRecord:
        """The tenant's app, or ``not_found``."""
        rec = self.store.doc.apps.get(Store.key(tenant, app))
        if rec is None:
            raise Refusal(ErrorCode.NOT_FOUND, f"tenant {tenant} has no app {app}")
        return rec

    def _check_quota(self, tenant: str, manifest: AppManifest, *, replacing: str | None) -> None:
        quota = self.config.quota(tenant)
        apps, workloads, cpu, mem = 0, 0, 0.0, 0
        for key, app in self.store.doc.apps.items():
            if app.tenant != tenant or key == replacing:
                continue
            apps += 1
            n, c, m = manifest_totals(app.manifest)
            workloads, cpu, mem = workloads + n, cpu + c, mem + m
        n, c, m = manifest_totals(manifest)
        checks = [
            ("apps", apps + 1, quota.max_apps),
            ("workloads", workloads + n, quota.max_workloads),
            ("cpu", cpu + c, quota.max_cpu),
            ("memory", mem + m, quota.max_memory),
        ]
        for what, total, limit in checks:
            if limit is not None and total > limit + 1e-9:
                raise Refusal(
                    ErrorCode.QUOTA_EXCEEDED,
                    f"tenant {tenant} would use {total:g} {what}, quota {limit:g}",
                    details={"resource": what, "requested": total, "limit": limit},
                )

    def _records(
        self, tenant: str, manifest: AppManifest, plan: Plan, rev: int
    ) -> list[PlacementRecord]:
        out = []
        for comp in manifest.components:
            for replica in range(comp.replicas):
                spec = make_spec(tenant, manifest, comp, replica)
                if spec.name in plan.placements:
                    out.append(
                        PlacementRecord(spec=spec, node=plan.placements[spec.name], revision=rev)
                    )
        return out

    @staticmethod
    def _event(kind: EventKind, app: AppRecord, message: str, **extra: object) -> Event:
        # The registry records apps from these events, so they carry the manifest itself.
        manifest = None
        if kind in (EventKind.APP_DEPLOYED, EventKind.APP_UPDATED):
            manifest = app.manifest.model_dump(mode="json")
        data = AppEventData.model_validate(
            {"version": app.manifest.version, "manifest": manifest, **extra}
        )
        return Event.of(kind, data, tenant=app.tenant, app=app.manifest.name, message=message)

    # --- the API -------------------------------------------------------------------------------

    def deploy(self, tenant: str, manifest: AppManifest, changes: Changes) -> AppRecord:
        """Place every workload of a new app, or refuse and change nothing."""
        key = Store.key(tenant, manifest.name)
        if key in self.store.doc.apps:
            raise Refusal(ErrorCode.CONFLICT, f"tenant {tenant} already has app {manifest.name}")
        self._check_quota(tenant, manifest, replacing=None)
        plan = Planner(self.view(), manifest, tenant, version="1").place(all_wants(manifest))
        if not plan.ok:
            raise _unschedulable(plan)
        now = time.time()
        rec = AppRecord(tenant=tenant, manifest=manifest, created_at=now, updated_at=now)
        rec.placements = self._records(tenant, manifest, plan, 1)
        self.store.doc.apps[key] = rec
        changes.apps.add(key)
        changes.dirty.update(plan.placements.values())
        changes.events.append((tenant, self._event(EventKind.APP_DEPLOYED, rec, "deployed")))
        return rec

    def update(self, tenant: str, manifest: AppManifest, changes: Changes) -> AppRecord:
        """Roll an app to a new manifest: new workloads first, old ones retire once it runs.

        Unchanged workloads stay where they are. When the new version does not fit beside the
        old, the old is replaced in place (stopped, then the new started); when it does not fit
        at all, nothing changes.
        """
        key = Store.key(tenant, manifest.name)
        rec = self.get(tenant, manifest.name)
        self._check_quota(tenant, manifest, replacing=key)
        rev = rec.revision + 1
        specs = [
            make_spec(tenant, manifest, c, r)
            for c in manifest.components
            for r in range(c.replicas)
        ]
        new_specs = {s.name: s for s in specs}
        offline = self.tracker.offline()
        keep = [
            p for p in rec.placements
            if not p.retiring and p.node is not None and p.node not in offline
            and new_specs.get(p.name) == p.spec
        ]  # fmt: skip
        old = [p for p in rec.placements if p not in keep]
        kept = {p.name for p in keep}
        wants = [
            w for w in all_wants(manifest)
            if workload_name(manifest.name, w.component, w.replica) not in kept
        ]  # fmt: skip
        # Plan against views of the app as each outcome would leave it (nothing changes until
        # a plan fits): first beside the old version, then with the old version gone.
        unchanged = self._placed(rec, keep, rev)
        beside = True
        view = self.view(skip=key, extra=unchanged + self._placed(rec, old))
        plan = Planner(view, manifest, tenant, version=str(rev)).place(wants)
        if not plan.ok:
            beside = False
            view = self.view(skip=key, extra=unchanged)
            plan = Planner(view, manifest, tenant, version=str(rev)).place(wants)
            if not plan.ok:
                raise _unschedulable(plan)
        for p in keep:
            p.revision = rev
        now = time.time()
        retiring = []
        for p in old:
            if p.node is None:
                continue
            changes.dirty.add(p.node)
            # An old replica retires beside its replacement, or, already retiring, beside an
            # unchanged replica; one whose workload the new manifest drops goes now (it would
            # also name a component the manifest no longer has).
            if beside and (p.spec.name in plan.placements or (p.retiring and p.spec.name in kept)):
                p.retiring, p.retire_by = True, p.retire_by or now + self.config.retire_timeout_s
                retiring.append(p)
        rec.placements = keep + self._records(tenant, manifest, plan, rev) + retiring
        rec.manifest, rec.revision, rec.updated_at = manifest, rev, now
        changes.apps.add(key)
        changes.dirty.update(plan.placements.values())
        changes.events.append(
            (tenant, self._event(EventKind.APP_UPDATED, rec, "updated", beside=beside))
        )
        return rec

    def scale(
        self, tenant: str, app: str, component: str, replicas: int, changes: Changes
    ) -> AppRecord:
        """Set one component's replica count: new replicas are placed, extra ones removed."""
        rec = self.get(tenant, app)
        try:
            comp = rec.manifest.component(component)
        except KeyError:
            raise Refusal(ErrorCode.NOT_FOUND, f"app {app} has no component {component}") from None
        comps = [c.model_copy(update={"replicas": replicas}) if c is comp else c
                 for c in rec.manifest.components]  # fmt: skip
        manifest = rec.manifest.model_copy(update={"components": comps})
        manifest = AppManifest.model_validate(manifest.model_dump())
        self._check_quota(tenant, manifest, replacing=Store.key(tenant, app))
        have = {
            p.spec.replica
            for p in rec.placements
            if not p.retiring and p.spec.component == component
        }
        wants = [Want(component, r) for r in range(replicas) if r not in have]
        plan = Planner(self.view(), manifest, tenant, version=str(rec.revision)).place(wants)
        if not plan.ok:
            raise _unschedulable(plan)
        keep = []
        for p in rec.placements:
            if p.spec.component == component and p.spec.replica >= replicas:
                if p.node is not None:
                    changes.dirty.add(p.node)
                continue
            keep.append(p)
        rec.placements = keep + self._records(tenant, manifest, plan, rec.revision)
        rec.manifest, rec.updated_at = manifest, time.time()
        changes.apps.add(Store.key(tenant, app))
        changes.dirty.update(plan.placements.values())
        changes.events.append(
            (
                tenant,
                self._event(
                    EventKind.APP_UPDATED, rec, "scaled", component=component, replicas=replicas
                ),
            )
        )
        return rec

    def delete(self, tenant: str, app: str, changes: Changes) -> list[str]:
        """Remove an app; returns the names of its workloads."""
        rec = self.get(tenant, app)
        del self.store.doc.apps[Store.key(tenant, app)]
        changes.apps.add(Store.key(tenant, app))
        changes.dirty.update(p.node for p in rec.placements if p.node is not None)
        changes.events.append((tenant, self._event(EventKind.APP_DELETED, rec, "deleted")))
        return sorted({p.name for p in rec.placements})

    def set_holders(self, tenant: str, req: ReplicaHolders) -> None:
        """Remember where a replica of ``req.workload``'s state waits (empty: nowhere)."""
        key = f"{tenant}/{req.workload}"
        self.holders.pop(key, None)
        if req.holders:
            self.holders[key] = list(req.holders)
            while len(self.holders) > MAX_HOLDERS:  # the oldest first
                del self.holders[next(iter(self.holders))]

    def move(self, tenant: str, req: MoveWorkload, changes: Changes) -> tuple[str | None, str]:
        """Re-home one replica (the migrator's ``apps/move``): to ``req.to``, else the cheapest
        of ``req.candidates`` (any node when empty) by the placement's filter and cost, never
        its own node or an offline one. Returns (from, to); with ``dry_run`` nothing changes.
        ``unschedulable`` (the reason per node) when no node fits."""
        found = next(
            ((a, p) for a in self.store.doc.apps.values() if a.tenant == tenant
             for p in a.placements if not p.retiring and p.name == req.workload),
            None,
        )  # fmt: skip
        if found is None:
            raise Refusal(ErrorCode.NOT_FOUND, f"tenant {tenant} has no workload {req.workload}")
        app, placement = found
        key = Store.key(tenant, app.manifest.name)
        others = [q for q in app.placements if q is not placement]
        view = self.view(skip=key, extra=self._placed(app, others))
        allowed = {req.to} if req.to is not None else set(req.candidates)
        offline = self.tracker.offline()
        exclude = [
            n.id for n in view.nodes
            if n.id == placement.node or n.id in offline or (allowed and n.id not in allowed)
        ]  # fmt: skip
        want = Want(placement.spec.component, placement.spec.replica)
        planner = Planner(view, app.manifest, tenant, version=str(app.revision))
        plan = planner.place([want], exclude=exclude)
        if not plan.ok:
            raise _unschedulable(plan)
        source, target = placement.node, plan.placements[placement.name]
        if req.dry_run:
            return source, target
        placement.node = target
        changes.apps.add(key)
        changes.dirty.add(target)
        if source is not None:
            changes.dirty.add(source)
        moves = self.store.doc.moves
        moves.append(MoveRecord(
            ts=time.time(), tenant=tenant, workload=placement.name, from_node=source,
            to_node=target, trigger=req.trigger.value, snapshot=req.snapshot,
        ))  # fmt: skip
        del moves[:-MAX_MOVES]
        changes.events.append((tenant, Event.of(
            EventKind.REPLACED, ReplacedData(from_=source, to=target), tenant=tenant,
            app=app.manifest.name, workload=placement.name, node=target,
            message=f"moved to {target} ({req.trigger.value})",
        )))  # fmt: skip
        return source, target

    # --- keeping the fleet healthy -------------------------------------------------------------

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
        view = self.view()
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
