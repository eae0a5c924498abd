"""Placed is not running: the alarm for a workload the scheduler counts as placed on a node
that no agent reports running.

A placement's desired state can fail to reach its node (a link that says ``up`` while it
carries nothing, a message queued for a session that never drains), or reach an agent that
cannot act on it (hung, stopped). Then the scheduler's record and the fleet disagree and nothing
else would say so: the app shows no pending workload and the node is online. Every placement
(not retiring) is timed from when this scheduler first saw it placed on its node, or last saw
that node report it ``running`` with the placement's spec hash in ``actual``. Past
``not_running_alarm_s`` a ``workload-not-running`` event (:class:`NotRunningData`) is published
once, and the apps listing shows it: ``AppSummary.not_running`` counts such workloads,
``PlacementInfo.not_running_s`` says for how long. Once the node reports it running the clock
starts again and the alarm may fire again later.

The clock is this process's (monotonic): a scheduler that starts, or takes the lease over, gives
every placement the whole bound again.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from fogmesh.protocol.apps import AppInfo, AppSummary
from fogmesh.protocol.events import Event, EventKind, NotRunningData
from fogmesh.protocol.workload import WorkloadSpec
from fogmesh.scheduler.nodes import NodeTracker
from fogmesh.scheduler.store import AppRecord, Store

__all__ = ["NotRunningWatch"]

_Key = tuple[str, str, str, str]
"""(tenant, workload, node, spec hash)."""


class NotRunningWatch:
    """Times every placement against its node's reports; raises the alarm past ``bound_s``."""

    def __init__(
        self,
        store: Store,
        tracker: NodeTracker,
        bound_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.tracker = tracker
        self.bound_s = bound_s
        self.clock = clock
        self.waiting_since: dict[_Key, float] = {}
        """Each placement not reported running: since when (first placed, or last running)."""
        self.alarmed: set[_Key] = set()
        self._hashes: dict[int, tuple[WorkloadSpec, str]] = {}
        """Spec hashes by ``id(spec)`` (the spec is held so the id stays its own): hashing
        every spec on every check would cost a fleet of 10,000 workloads a core."""

    def _hash(self, spec: WorkloadSpec) -> str:
        found = self._hashes.get(id(spec))
        if found is None or found[0] is not spec:
            found = self._hashes[id(spec)] = (spec, spec.spec_hash())
        return found[1]

    def _key(self, tenant: str, name: str, node: str, spec: WorkloadSpec) -> _Key:
        return (tenant, name, node, self._hash(spec))

    def check(self) -> list[tuple[str, Event]]:
        """Fold in the nodes' reports; the alarms that are due now, as (tenant, event)."""
        now = self.clock()
        seen: set[_Key] = set()
        specs: set[int] = set()
        due: list[tuple[str, Event]] = []
        for app, p in self.store.placements():
            if p.node is None or p.retiring:
                continue
            specs.add(id(p.spec))
            key = self._key(app.tenant, p.name, p.node, p.spec)
            seen.add(key)
            if self.tracker.is_running(p.node, p.name, key[3]):
                self.waiting_since.pop(key, None)
                self.alarmed.discard(key)
                continue
            since = self.waiting_since.setdefault(key, now)
            if now - since > self.bound_s and key not in self.alarmed:
                self.alarmed.add(key)
                due.append((app.tenant, self._event(app, p.name, p.node, now - since)))
        for gone in self.waiting_since.keys() - seen:
            del self.waiting_since[gone]
        self.alarmed &= seen
        for stale in self._hashes.keys() - specs:
            del self._hashes[stale]
        return due

    def _event(self, app: AppRecord, workload: str, node: str, waited: float) -> Event:
        rec = self.tracker.nodes.get(node)
        state = self.tracker.liveness(rec).value if rec is not None else "unknown"
        data = NotRunningData(
            node=node, not_running_s=round(waited, 3), bound_s=self.bound_s, node_state=state
        )
        return Event.of(
            EventKind.WORKLOAD_NOT_RUNNING,
            data,
            tenant=app.tenant,
            app=app.manifest.name,
            workload=workload,
            node=node,
            message=f"placed on {node} but not reported running for {waited:.0f}s"
            f" (bound {self.bound_s:g}s, node {state})",
        )

    def not_running_s(self, tenant: str, name: str, node: str, spec: WorkloadSpec) -> float | None:
        """Seconds the placement has waited past the bound's start, once past it (else None)."""
        since = self.waiting_since.get(self._key(tenant, name, node, spec))
        if since is None:
            return None
        waited = self.clock() - since
        return round(waited, 3) if waited > self.bound_s else None

    def info(self, app: AppRecord) -> AppInfo:
        """``app.info()`` with each placement's ``not_running_s``."""
        info = app.info()
        by_name = {(p.name, p.node): p.spec for p in app.placements if not p.retiring}
        for placed in info.placements:
            spec = by_name.get((placed.workload, placed.node))
            if placed.node is not None and spec is not None and not placed.retiring:
                placed.not_running_s = self.not_running_s(
                    app.tenant, placed.workload, placed.node, spec
                )
        return info

    def summary(self, app: AppRecord) -> AppSummary:
        """``app.summary()`` with the count of placements past the bound."""
        summary = app.summary()
        summary.not_running = sum(
            1
            for p in app.placements
            if p.node is not None
            and not p.retiring
            and self.not_running_s(app.tenant, p.name, p.node, p.spec) is not None
        )
        return summary
