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
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Literal, TypeVar

import structlog

from fogmesh.agent.handover import Handover
from fogmesh.agent.phases import PhaseMachine
from fogmesh.agent.runtime.base import (
    LABEL_APP,
    LABEL_COMPONENT,
    LABEL_TENANT,
    InstanceState,
    InstanceStatus,
    Runtime,
    split_key,
    workload_key,
)
from fogmesh.agent.runtime.errors import RuntimeFailure, RuntimeUnavailable
from fogmesh.agent.store import DesiredStore, StoppedWorkloads
from fogmesh.agent.tracked import STABLE_AFTER_S, Tracked, overall_state, retry_delay
from fogmesh.protocol import (
    ActualState,
    FogmeshError,
    RestartPolicy,
    RuntimeKind,
    WorkloadPhase,
    WorkloadSpec,
    WorkloadStatus,
)

if TYPE_CHECKING:  # the event contract is imported by the first event (a node without
    # workloads sends none: docs/agent.md, "Memory")
    from fogmesh.protocol.events import Event, EventData, EventKind

__all__ = ["Reconciler"]

log = structlog.get_logger("fogmesh.agent.reconcile")

P = WorkloadPhase
_ACTIVE = frozenset({P.RUNNING, P.STARTING, P.PAUSED, P.STOPPING})

EventSink = Callable[[str | None, "Event"], None]
T = TypeVar("T")


class Reconciler:
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
                _key(w): w for w in (self.store.current.workloads if self.store.current else [])
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
            except _Handled:
                pass
            except Exception as exc:  # never let one workload break the pass
                log.exception("reconciling a workload failed", workload=name)
                tracked = self.tracked.get(name)
                if tracked is not None and tracked.machine.phase is not P.REMOVED:
                    self._fail(tracked, f"internal error: {type(exc).__name__}: {exc}")

    # -- one workload -------------------------------------------------------------------------

    def _track(self, spec: WorkloadSpec) -> Tracked:
        key = _key(spec)
        tracked = self.tracked.get(key)
        if tracked is None or tracked.machine.phase is P.REMOVED:
            machine = PhaseMachine(key, listener=self._listener(key))
            tracked = Tracked(spec=spec, machine=machine)
            self.tracked[key] = tracked
        elif tracked.spec != spec:
            if tracked.spec.spec_hash() != spec.spec_hash():
                # a new spec deserves a fresh try
                tracked.failures, tracked.retry_at, tracked.finished = 0, 0.0, False
            tracked.spec = spec
        return tracked

    async def _ensure(  # noqa: PLR0912 -- one branch per observed instance state
        self, spec: WorkloadSpec, inst: InstanceStatus | None, down: Mapping[RuntimeKind, str]
    ) -> None:
        tracked = self._track(spec)
        machine = tracked.machine
        if _key(spec) in self.held:
            return
        if _key(spec) in self.stopped:
            if inst is not None and machine.phase is P.DEFINED:  # after an agent restart
                machine.move(P.CONFIGURED, "stopped by its tenant")
            return
        runtime = self.runtimes.get(spec.runtime)
        if runtime is None:
            why = self.missing_runtimes.get(spec.runtime, "not enabled in the agent config")
            self._fail(tracked, f"runtime {spec.runtime.value} is not available here: {why}")
            return
        if spec.runtime in down:
            self._fail(tracked, f"runtime {spec.runtime.value} unavailable: {down[spec.runtime]}")
            return
        if inst is None or inst.state is InstanceState.ABSENT:
            if machine.phase in _ACTIVE:
                tracked.runtime_id = ""
                machine.drive_to(P.FAILED, "instance disappeared")
                tracked.finished = spec.restart_policy is RestartPolicy.NEVER
            if tracked.finished:
                return
            if self._waiting(tracked):
                return
            await self._create_and_start(tracked, runtime)
            return
        if inst.spec_hash != spec.spec_hash():
            if self._waiting(tracked):
                return
            await self._replace(tracked, runtime, inst)
            return
        tracked.runtime_id = inst.runtime_id
        if inst.state is InstanceState.RUNNING:
            self._observe_running(tracked, inst)
        elif inst.state is InstanceState.CREATED:
            if self._waiting(tracked):
                return
            if machine.phase is P.DEFINED:
                machine.move(P.CONFIGURED, "instance exists")
            machine.drive_to(P.STARTING)
            self._after_start(tracked, await self._call(tracked, runtime.start(_key(spec))))
        else:
            await self._handle_exit(tracked, runtime, inst)

    def _observe_running(self, tracked: Tracked, inst: InstanceStatus) -> None:
        machine = tracked.machine
        if machine.phase is P.DEFINED:
            machine.path(P.CONFIGURED, P.RUNNING, reason="adopted: already running")
        elif machine.phase is not P.RUNNING:
            machine.drive_to(P.RUNNING)
        if machine.reason and not machine.reason.startswith("adopted"):
            machine.move(P.RUNNING, "")
        if inst.started_at is not None and time.time() - inst.started_at > STABLE_AFTER_S:
            tracked.failures = 0

    async def _create_and_start(self, tracked: Tracked, runtime: Runtime) -> None:
        spec, machine = tracked.spec, tracked.machine
        if machine.phase not in {P.DEFINED, P.FAILED, P.STOPPED, P.CONFIGURED}:
            machine.drive_to(P.DEFINED)
        await self._call(tracked, runtime.prepare(spec))
        # one create at a time per tenant and runtime: the first one may make the tenant's
        # network, and two racing creates could each make one
        snapshot = self.handover.take_ready(_key(spec))
        async with self._create_locks.setdefault((spec.runtime, spec.tenant), asyncio.Lock()):
            if snapshot is None:
                await self._call(tracked, runtime.create(spec))
            else:  # a migrated workload starts from the state it brought
                await self._call(tracked, runtime.restore(spec, snapshot))
                self.handover.drop_ready(_key(spec))
                log.info("restored migrated state", workload=spec.name, bytes=len(snapshot))
        if machine.phase is not P.CONFIGURED:
            machine.move(P.CONFIGURED, "created" if snapshot is None else "restored")
        machine.move(P.STARTING)
        self._after_start(tracked, await self._call(tracked, runtime.start(_key(spec))))

    def _after_start(self, tracked: Tracked, status: InstanceStatus) -> None:
        tracked.runtime_id = status.runtime_id
        if status.state is InstanceState.RUNNING:
            tracked.machine.move(P.RUNNING, "")
        # otherwise it already exited: the next pass sees EXITED and applies the policy

    async def _replace(self, tracked: Tracked, runtime: Runtime, inst: InstanceStatus) -> None:
        spec, machine = tracked.spec, tracked.machine
        reason = f"spec changed ({inst.spec_hash} -> {spec.spec_hash()})"
        log.info("replacing workload", workload=spec.name, reason=reason)
        if inst.state is InstanceState.RUNNING:
            if machine.phase is P.DEFINED:
                machine.path(P.CONFIGURED, P.RUNNING, reason="adopted: already running")
            machine.drive_to(P.STOPPING, reason)
            await self._call(tracked, runtime.stop(_key(spec), self.stop_timeout))
            machine.move(P.STOPPED, reason)
        # A new version keeps its state; a workload of the same name now owned by another
        # tenant (or another app) must never inherit the previous owner's data.
        same_owner = all(
            inst.labels.get(label) == value
            for label, value in (
                (LABEL_TENANT, spec.tenant),
                (LABEL_APP, spec.app),
                (LABEL_COMPONENT, spec.component),
            )
        )
        await self._call(tracked, runtime.remove(_key(spec), keep_state=same_owner))
        machine.drive_to(P.DEFINED, reason)
        from fogmesh.protocol.events import EventKind, ReplacedData

        self._send_event(
            spec.tenant,
            EventKind.REPLACED,
            spec,
            reason,
            ReplacedData(old_spec_hash=inst.spec_hash, new_spec_hash=spec.spec_hash()),
        )
        await self._create_and_start(tracked, runtime)

    async def _handle_exit(self, tracked: Tracked, runtime: Runtime, inst: InstanceStatus) -> None:
        spec, machine = tracked.spec, tracked.machine
        code = inst.exit_code
        crashed = code != 0
        why = f"exited with code {code}"
        if machine.phase in _ACTIVE:
            if crashed:
                machine.drive_to(P.FAILED, why)
            elif machine.phase is P.STOPPING or machine.can(P.STOPPED):
                machine.move(P.STOPPED, why)
            else:
                machine.drive_to(P.STOPPED, why)
            tracked.failures += 1
            delay = retry_delay(tracked.failures - 1, base=self.retry_base, cap=self.retry_cap)
            # the first restart is immediate; a crash loop slows down
            tracked.retry_at = time.monotonic() + (0.0 if tracked.failures == 1 else delay)
        elif machine.phase is P.DEFINED:
            machine.move(P.CONFIGURED, f"found exited ({why})")
        policy = spec.restart_policy
        restart = policy is RestartPolicy.ALWAYS or (policy is RestartPolicy.ON_FAILURE and crashed)
        if not restart:
            tracked.finished = True
            return
        if self._waiting(tracked):
            return
        tracked.restarts += 1
        machine.drive_to(P.STARTING, f"restart {tracked.restarts} after it {why}")
        self._after_start(tracked, await self._call(tracked, runtime.start(_key(spec))))

    async def _remove_extra(self, name: str, inst: InstanceStatus) -> None:
        attempts, not_before = self._removal_retry.get(name, (0, 0.0))
        if time.monotonic() < not_before:
            return
        runtime = self.runtimes[inst.runtime]
        tracked = self.tracked.get(name)
        still_desired = tracked is not None and tracked.spec.runtime is not inst.runtime
        machine = None if tracked is None or still_desired else tracked.machine
        try:
            if machine is not None and machine.phase in _ACTIVE:
                machine.drive_to(P.STOPPING, "no longer desired")
            if inst.state is InstanceState.RUNNING:
                await runtime.stop(name, self.stop_timeout)
            await runtime.remove(name)
        except RuntimeFailure as exc:
            delay = retry_delay(attempts, base=self.retry_base, cap=self.retry_cap)
            self._removal_retry[name] = (attempts + 1, time.monotonic() + delay)
            log.warning("removing a workload failed; will retry", workload=name, error=str(exc))
            if machine is not None:
                machine.drive_to(P.FAILED, f"remove failed: {exc}")
            return
        self._removal_retry.pop(name, None)
        self._pending_removals.discard(name)
        self.held.discard(name)
        self.stopped.set(name, False)
        self.handover.drop_out(name)
        log.info("removed workload", workload=name, runtime=inst.runtime.value)
        if machine is not None and tracked is not None:
            self._retire(tracked, "no longer desired")

    def _retire(self, tracked: Tracked, reason: str) -> None:
        machine = tracked.machine
        if machine.phase is not P.REMOVED:
            machine.drive_to(P.REMOVED, reason)
        self.tracked.pop(_key(tracked.spec), None)

    # -- failures -----------------------------------------------------------------------------

    async def _call(self, tracked: Tracked, call: Awaitable[T]) -> T:
        try:
            return await call
        except RuntimeFailure as exc:
            self._fail(tracked, str(exc), unavailable=isinstance(exc, RuntimeUnavailable))
            raise _Handled from exc

    def _fail(self, tracked: Tracked, reason: str, *, unavailable: bool = False) -> None:
        same = tracked.machine.phase is P.FAILED and tracked.machine.reason == reason[:2048]
        if same and time.monotonic() < tracked.retry_at:
            return
        tracked.failures += 1
        delay = retry_delay(tracked.failures - 1, base=self.retry_base, cap=self.retry_cap)
        tracked.retry_at = time.monotonic() + delay
        log.warning(
            "workload failed; will retry",
            workload=tracked.spec.name,
            reason=reason[:500],
            retry_in_s=round(delay, 2),
            engine_down=unavailable,
        )
        tracked.machine.drive_to(P.FAILED, reason)

    def _waiting(self, tracked: Tracked) -> bool:
        return time.monotonic() < tracked.retry_at

    # -- reporting ----------------------------------------------------------------------------

    def _listener(self, key: str) -> Callable[[WorkloadPhase, WorkloadPhase, str], None]:
        tenant, name = split_key(key)

        def changed(old: WorkloadPhase, new: WorkloadPhase, reason: str) -> None:
            tracked = self.tracked.get(key)
            log.info(
                "workload phase",
                workload=name,
                old=old.value,
                new=new.value,
                reason=reason,
                tenant=tenant,
            )
            if tracked is not None:
                from fogmesh.protocol.events import EventKind, WorkloadStateData

                self._send_event(
                    tracked.spec.tenant,
                    EventKind.WORKLOAD_STATE,
                    tracked.spec,
                    reason,
                    WorkloadStateData(from_=old.value, to=new.value),
                )
            self._note_change()

        return changed

    def _send_event(
        self,
        tenant: str | None,
        kind: EventKind,
        spec: WorkloadSpec,
        message: str,
        data: EventData,
    ) -> None:
        if self._emit is None:
            return
        from fogmesh.protocol.events import Event

        event = Event.of(
            kind,
            data,
            tenant=spec.tenant,
            node=self.node,
            app=spec.app,
            workload=spec.name,
            message=message[:4096],
        )
        self._emit(tenant, event)

    def statuses(self, tenant: str | None = None) -> list[WorkloadStatus]:
        """Each tracked workload's status (only ``tenant``'s when given), sorted by name."""
        return [
            t.status()
            for _, t in sorted(self.tracked.items())
            if tenant is None or t.spec.tenant == tenant
        ]

    def overall(self) -> Literal["converged", "converging", "degraded"]:
        """converged, converging or degraded."""
        return overall_state(self.tracked.values(), pending_removals=bool(self._pending_removals))

    def actual(self, source: str = "") -> ActualState:
        """The actual state now (per-workload usage is left to the heartbeat)."""
        workloads = [
            s.model_copy(update={"cpu_percent": 0.0, "memory_bytes": 0}) for s in self.statuses()
        ]
        return ActualState(
            node=self.node,
            source=source,
            observed_generation=self.store.generation,
            workloads=workloads,
            rejected=self.rejected,
            state=self.overall(),
        )

    def _note_change(self) -> None:
        actual = self.actual()
        body = {
            "g": actual.observed_generation,
            "w": [w.model_dump(mode="json", exclude={"since"}) for w in actual.workloads],
            "r": actual.rejected,
            "s": actual.state,
        }
        fingerprint = json.dumps(body, sort_keys=True)
        if fingerprint != self._fingerprint:
            self._fingerprint = fingerprint
            self.changed.set()


def _key(spec: WorkloadSpec) -> str:
    """The workload's key on this node: tracked workloads and runtime calls use it, so two
    tenants' equal workload names never meet."""
    return workload_key(spec.tenant, spec.name)


class _Handled(FogmeshError):
    """A runtime failure already recorded on the workload (ends that workload's step)."""
