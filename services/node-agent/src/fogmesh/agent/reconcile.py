"""Level-triggered reconciliation: make what the runtimes run match the desired state.

Each pass (after every desired-state change, and on a timer) compares the desired specs, by
``spec_hash()``, with the instances the runtimes report (``list_instances``):

* missing            -> prepare, create, start       (DEFINED -> CONFIGURED -> STARTING -> RUNNING)
* spec hash changed  -> stop, remove (state kept), create, start: the new spec replaces it
* not desired        -> stop, remove                 (... -> STOPPING -> REMOVED)
* exited             -> started again per its restart policy, with capped jittered back-off
* running, same hash -> adopted as is (after an agent restart: no duplicate)
* held               -> left alone (frozen for a migration: see ``fogmesh.agent.handover``)
* stopped by tenant  -> left stopped until ``cmd/start`` (persisted in ``stopped.json``)

A workload created while a migrated snapshot of it waits in the handover directory is restored
from that snapshot before its first start.

A runtime failure marks the workload FAILED with the reason and retries it after a capped,
jittered back-off; it never escapes the pass, so the agent never crash-loops. Passes hold
:attr:`Reconciler.lock`, which commands that change a workload (restart) take too.

This module holds the pass itself; the :class:`Reconciler` gets its per-workload steps from
``fogmesh.agent.reconcile_steps``, its failure and back-off bookkeeping from
``fogmesh.agent.reconcile_backoff`` and its reporting (phase events, statuses, the actual
state) from ``fogmesh.agent.reconcile_report``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping

import structlog

from fogmesh.agent.handover import Handover
from fogmesh.agent.reconcile_backoff import HandledFailure
from fogmesh.agent.reconcile_report import EventSink
from fogmesh.agent.reconcile_steps import WorkloadSteps, spec_key
from fogmesh.agent.runtime.base import InstanceStatus, Runtime
from fogmesh.agent.runtime.errors import RuntimeFailure
from fogmesh.agent.store import DesiredStore, StoppedWorkloads
from fogmesh.agent.tracked import Tracked
from fogmesh.protocol import RuntimeKind, WorkloadPhase

__all__ = ["Reconciler"]

log = structlog.get_logger("fogmesh.agent.reconcile")

P = WorkloadPhase


class Reconciler(WorkloadSteps):
    """Drives the runtimes toward the desired state held by a :class:`DesiredStore`."""

    def __init__(
        self,
        node: str,
        store: DesiredStore,
        runtimes: Mapping[RuntimeKind, Runtime],
        *,
        missing_runtimes: Mapping[RuntimeKind, str] | None = None,
        stop_timeout: float = 10.0,
        retry_base: float = 1.0,
        retry_cap: float = 60.0,
        emit: EventSink | None = None,
        concurrency: int = 4,
    ) -> None:
        self.node = node
        self.store = store
        self.runtimes = dict(runtimes)
        self.missing_runtimes = dict(missing_runtimes or {})
        self.stop_timeout = stop_timeout
        self.retry_base = retry_base
        self.retry_cap = retry_cap
        self._emit = emit
        self.lock = asyncio.Lock()
        self.tracked: dict[str, Tracked] = {}
        self.rejected = ""
        self.changed = asyncio.Event()
        """Set when the actual state differs from the last one :meth:`actual` returned."""
        self._wake = asyncio.Event()
        self._removal_retry: dict[str, tuple[int, float]] = {}
        self._pending_removals: set[str] = set()
        self._fingerprint = ""
        self._sem = asyncio.Semaphore(concurrency)
        self._create_locks: dict[tuple[RuntimeKind, str], asyncio.Lock] = {}
        self.handover = Handover(store.path.parent / "handover")
        self.held: set[str] = set()
        """Workload keys frozen for a migration: not started again until thawed or removed."""
        self.down: dict[RuntimeKind, str] = {}
        """The runtimes that failed their last listing, with why (the node's trouble)."""
        self.stopped = StoppedWorkloads(store.path.parent)
        """Workload keys a tenant stopped: left stopped (persisted) until started or removed."""
        self.stopped.load()

    # -- driving ------------------------------------------------------------------------------

    def trigger(self) -> None:
        """Ask for a pass now (e.g. after a new desired state)."""
        self._wake.set()

    async def run(self, interval: float) -> None:
        """Reconcile now, then after every :meth:`trigger` and at least every ``interval`` s."""
        while True:
            self._wake.clear()
            try:
                await self.reconcile_once()
            except Exception:  # a bug in one pass must not stop supervision
                log.exception("reconcile pass failed")
            try:
                async with asyncio.timeout(interval):
                    await self._wake.wait()
            except TimeoutError:
                pass

    def set_rejected(self, reason: str) -> None:
        """Record why the last desired state was refused ("" when the last one was taken)."""
        self.rejected = reason[:4096]
        self._note_change()

    async def reconcile_once(self) -> None:
        """One level-triggered pass over every runtime and every desired workload."""
        async with self.lock:
            desired = {
                spec_key(w): w for w in (self.store.current.workloads if self.store.current else [])
            }
            observed, down = await self._observe()
            self.down = down
            extras = {
                name: inst
                for name, inst in observed.items()
                if name not in desired or desired[name].runtime is not inst.runtime
            }
            self._pending_removals = set(extras)
            jobs: list[Awaitable[None]] = [
                self._guard(name, self._remove_extra(name, inst)) for name, inst in extras.items()
            ]
            for name in list(self.tracked):
                if name not in desired:
                    tracked = self.tracked[name]
                    if name in self._pending_removals or tracked.spec.runtime in down:
                        continue
                    self._retire(tracked, "no longer desired")
            for key, spec in desired.items():
                inst = observed.get(key)
                if inst is not None and inst.runtime is not spec.runtime:
                    inst = None
                jobs.append(self._guard(key, self._ensure(spec, inst, down)))
            await asyncio.gather(*jobs)
            self._note_change()

    async def _observe(
        self,
    ) -> tuple[dict[str, InstanceStatus], dict[RuntimeKind, str]]:
        observed: dict[str, InstanceStatus] = {}
        down: dict[RuntimeKind, str] = {}
        for kind, runtime in self.runtimes.items():
            try:
                instances = await runtime.list_instances()
            except RuntimeFailure as exc:
                down[kind] = str(exc)
                log.warning("runtime cannot list its instances", runtime=kind.value, error=str(exc))
                continue
            for inst in instances:
                if inst.name:
                    observed.setdefault(inst.name, inst)
        return observed, down

    async def _guard(self, name: str, job: Awaitable[None]) -> None:
        async with self._sem:
            try:
                await job
            except HandledFailure:
                pass
            except Exception as exc:  # never let one workload break the pass
                log.exception("reconciling a workload failed", workload=name)
                tracked = self.tracked.get(name)
                if tracked is not None and tracked.machine.phase is not P.REMOVED:
                    self._fail(tracked, f"internal error: {type(exc).__name__}: {exc}")
