"""What the scheduler does to its store: deploy, update, scale, delete, move, and heal the fleet.

Each operation changes :class:`~fogmesh.scheduler.store.Store` in memory, or raises
:class:`~fogmesh.bus.Refusal` and changes nothing, and returns the nodes whose desired state
changed (:class:`~fogmesh.scheduler.changes.Changes`); the service saves the store and publishes
those nodes' desired states. The views plans are made on are
:class:`~fogmesh.scheduler.picture.FleetPicture`'s; healing is
:class:`~fogmesh.scheduler.healing.Healing`'s.
"""

from __future__ import annotations

import time

from fogmesh.bus import Refusal
from fogmesh.protocol.errors import ErrorCode
from fogmesh.protocol.events import AppEventData, Event, EventKind, ReplacedData
from fogmesh.protocol.manifest import AppManifest
from fogmesh.protocol.migration import MoveWorkload, ReplicaHolders
from fogmesh.scheduler.changes import Changes
from fogmesh.scheduler.config import SchedulerConfig
from fogmesh.scheduler.healing import Healing
from fogmesh.scheduler.picture import Fleet, FleetPicture, placed, placement_records
from fogmesh.scheduler.placement import Plan, Planner, Want, all_wants, workload_name
from fogmesh.scheduler.quota import check_quota
from fogmesh.scheduler.specs import make_spec
from fogmesh.scheduler.store import MAX_MOVES, AppRecord, MoveRecord, Store

__all__ = ["Changes", "Fleet", "Operations"]

MAX_HOLDERS = 10_000
"""Workloads whose replicas' holders the scheduler remembers (the migrator's, in memory)."""


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
        self.holders: dict[str, list[str]] = {}
        """``{tenant}/{workload}`` -> the nodes holding its state's replica (the migrator's);
        healing reads this very dict, so it is changed in place only."""
        self.picture = FleetPicture(store, tracker)
        self._healing = Healing(store, tracker, self.picture, self.holders)

    # --- helpers -------------------------------------------------------------------------------

    def get(self, tenant: str, app: str) -> AppRecord:
        """The tenant's app, or ``not_found``."""
        rec = self.store.doc.apps.get(Store.key(tenant, app))
        if rec is None:
            raise Refusal(ErrorCode.NOT_FOUND, f"tenant {tenant} has no app {app}")
        return rec

    def _check_quota(self, tenant: str, manifest: AppManifest, *, replacing: str | None) -> None:
        quota = self.config.quota(tenant)
        check_quota(quota, self.store.doc.apps.items(), tenant, manifest, replacing=replacing)

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
        view = self.picture.view()
        plan = Planner(view, manifest, tenant, version="1").place(all_wants(manifest))
        if not plan.ok:
            raise _unschedulable(plan)
        now = time.time()
        rec = AppRecord(tenant=tenant, manifest=manifest, created_at=now, updated_at=now)
        rec.placements = placement_records(tenant, manifest, plan, 1)
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
        unchanged = placed(rec, keep, rev)
        beside = True
        view = self.picture.view(skip=key, extra=unchanged + placed(rec, old))
        plan = Planner(view, manifest, tenant, version=str(rev)).place(wants)
        if not plan.ok:
            beside = False
            view = self.picture.view(skip=key, extra=unchanged)
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
        rec.placements = keep + placement_records(tenant, manifest, plan, rev) + retiring
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
        view = self.picture.view()
        plan = Planner(view, manifest, tenant, version=str(rec.revision)).place(wants)
        if not plan.ok:
            raise _unschedulable(plan)
        keep = []
        for p in rec.placements:
            if p.spec.component == component and p.spec.replica >= replicas:
                if p.node is not None:
                    changes.dirty.add(p.node)
                continue
            keep.append(p)
        rec.placements = keep + placement_records(tenant, manifest, plan, rec.revision)
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
        view = self.picture.view(skip=key, extra=placed(app, others))
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
        """Move workloads off offline nodes, place pending ones, retire finished old versions
        (:meth:`Healing.heal <fogmesh.scheduler.healing.Healing.heal>`)."""
        self._healing.heal(changes, retry_pending=retry_pending)
