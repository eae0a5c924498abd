"""The reconciler's steps for one workload, given what its runtime reports of it.

Tracking a desired spec (a new spec hash gets a fresh try), then one step per observed state:
prepare, create (or restore from a migrated snapshot) and start a missing instance; replace one
whose spec hash changed; adopt a running one; apply the restart policy to an exited one; stop
and remove one no longer desired; retire a workload's tracking once it is removed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping

import structlog

from fogmesh.agent.handover import Handover
from fogmesh.agent.phases import PhaseMachine
from fogmesh.agent.reconcile_backoff import FailureBackoff
from fogmesh.agent.reconcile_report import ReconcileReporting
from fogmesh.agent.runtime.base import (
    LABEL_APP,
    LABEL_COMPONENT,
    LABEL_TENANT,
    InstanceState,
    InstanceStatus,
    Runtime,
    workload_key,
)
from fogmesh.agent.runtime.errors import RuntimeFailure
from fogmesh.agent.store import StoppedWorkloads
from fogmesh.agent.tracked import STABLE_AFTER_S, Tracked, retry_delay
from fogmesh.protocol import RestartPolicy, RuntimeKind, WorkloadPhase, WorkloadSpec

__all__ = ["WorkloadSteps", "spec_key"]

log = structlog.get_logger("fogmesh.agent.reconcile")  # the reconciler's one logger

P = WorkloadPhase
_ACTIVE = frozenset({P.RUNNING, P.STARTING, P.PAUSED, P.STOPPING})


class WorkloadSteps(FailureBackoff, ReconcileReporting):
    """Part of :class:`~fogmesh.agent.reconcile.Reconciler`: moves one workload a step toward
    its desired spec (or away, when it is no longer desired)."""

    runtimes: dict[RuntimeKind, Runtime]  # set by Reconciler.__init__
    missing_runtimes: dict[RuntimeKind, str]
    stop_timeout: float
    handover: Handover
    held: set[str]
    stopped: StoppedWorkloads
    _removal_retry: dict[str, tuple[int, float]]
    _create_locks: dict[tuple[RuntimeKind, str], asyncio.Lock]

    def _track(self, spec: WorkloadSpec) -> Tracked:
        key = spec_key(spec)
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
        if spec_key(spec) in self.held:
            return
        if spec_key(spec) in self.stopped:
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
            self._after_start(tracked, await self._call(tracked, runtime.start(spec_key(spec))))
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
        snapshot = self.handover.take_ready(spec_key(spec))
        async with self._create_locks.setdefault((spec.runtime, spec.tenant), asyncio.Lock()):
            if snapshot is None:
                await self._call(tracked, runtime.create(spec))
            else:  # a migrated workload starts from the state it brought
                await self._call(tracked, runtime.restore(spec, snapshot))
                self.handover.drop_ready(spec_key(spec))
                log.info("restored migrated state", workload=spec.name, bytes=len(snapshot))
        if machine.phase is not P.CONFIGURED:
            machine.move(P.CONFIGURED, "created" if snapshot is None else "restored")
        machine.move(P.STARTING)
        self._after_start(tracked, await self._call(tracked, runtime.start(spec_key(spec))))

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
            await self._call(tracked, runtime.stop(spec_key(spec), self.stop_timeout))
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
        await self._call(tracked, runtime.remove(spec_key(spec), keep_state=same_owner))
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
        self._after_start(tracked, await self._call(tracked, runtime.start(spec_key(spec))))

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
        self.tracked.pop(spec_key(tracked.spec), None)


def spec_key(spec: WorkloadSpec) -> str:
    """The workload's key on this node: tracked workloads and runtime calls use it, so two
    tenants' equal workload names never meet."""
    return workload_key(spec.tenant, spec.name)
