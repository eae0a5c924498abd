"""One migration, stage by stage (the paper's four: peer selection, configuration, dependency
and state transfer, activation), with its events.

1. peer selection: every live node but the source (and but nodes lost lately) is asked for its
   level (``resource-request``); the scheduler picks among the level-2 ones by its placement
   filter and cost (``ops/scheduler/move`` with ``dry_run``). No peer: ``migration-failed`` with the
   reason per node, and the workload stays where it is.
2. state transfer (planned moves off a live node): the source agent freezes the workload (stops
   it and holds it) and stages its snapshot; the source agent pushes it chunk by chunk (sha256
   each, the peer naming the offset it needs next) to the peer agent's ``state-put``, peer to
   peer over their site broker (:mod:`fogmesh.migrator.transfer`); the migrator watches.
3. configuration: the scheduler leader records the move and writes both nodes' desired states.
4. activation: the peer's agent restores the snapshot, starts the workload and its heartbeat
   shows it running; the source removes its copy. A failure after the freeze thaws the source.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import TypeVar

import structlog

from fogmesh.bus import Bus
from fogmesh.migrator.config import MigratorConfig
from fogmesh.migrator.fleet import FleetView
from fogmesh.migrator.guard import Guard
from fogmesh.migrator.transfer import TransferFailed, hand_over
from fogmesh.protocol import BusError, ErrorCode, FogmeshError, RemoteError, new_id, topics
from fogmesh.protocol.apps import AppAction
from fogmesh.protocol.commands import AckReply, NodeVerb
from fogmesh.protocol.envelope import Reply, Request
from fogmesh.protocol.events import Event, EventKind, MigrationData
from fogmesh.protocol.migration import (
    HOLDERS_VERB,
    FreezeCommand,
    FrozenReply,
    MigrationTrigger,
    MoveReply,
    MoveWorkload,
    PeerLevel,
    ReplicaHolders,
    ResourceOffer,
    ResourceRequest,
    StageOutcome,
    StateDropCommand,
    ThawCommand,
)
from fogmesh.protocol.workload import WorkloadSpec

__all__ = ["MigrationFailed", "Mover", "Outcome"]

log = structlog.get_logger("fogmesh.migrator")
R = TypeVar("R", bound=Reply)
_AUTOMATIC = frozenset(
    {MigrationTrigger.OVERLOAD, MigrationTrigger.NODE_LOST, MigrationTrigger.NODE_ASKS}
)
CHUNK_RETRIES = 3
THROTTLE_RETRIES = 20
ACTIVATION_TIMEOUT_S = 120.0


class MigrationFailed(FogmeshError):
    """A stage could not be done; ``reasons`` says why (per node where it has one)."""

    def __init__(self, message: str, reasons: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.reasons = reasons or {}


@dataclass(slots=True)
class Outcome:
    """How one workload's migration ended."""

    outcome: StageOutcome
    peer: str | None = None
    reason: str = ""


@dataclass(slots=True)
class _Run:
    tenant: str
    spec: WorkloadSpec
    source: str
    trigger: MigrationTrigger
    started: float = field(default_factory=time.monotonic)
    stages: dict[str, float] = field(default_factory=dict)
    peer: str | None = None
    level: int | None = None
    state_bytes: int | None = None
    frozen_at: float | None = None
    staged_on: str | None = None
    """The peer the snapshot went to, until the scheduler placed the workload there."""
    freeze_s: float | None = None

    def stage(self, name: str, since: float) -> float:
        now = time.monotonic()
        self.stages[name] = round(now - since, 6)
        return now

    def data(self, reasons: dict[str, str] | None = None) -> MigrationData:
        return MigrationData(
            trigger=self.trigger.value, from_=self.source, to=self.peer, level=self.level,
            stateful=self.state_bytes is not None, state_bytes=self.state_bytes,
            freeze_s=self.freeze_s, duration_s=round(time.monotonic() - self.started, 6),
            stages_s=dict(self.stages), reasons=reasons or {},
        )  # fmt: skip


class Mover:
    """Carries out migrations one at a time."""

    def __init__(self, bus: Bus, config: MigratorConfig, fleet: FleetView, guard: Guard) -> None:
        self.bus = bus
        self.config = config
        self.fleet = fleet
        self.guard = guard
        self.lock = asyncio.Lock()

    async def migrate(
        self,
        tenant: str,
        workload: str,
        trigger: MigrationTrigger,
        *,
        to: str | None = None,
        stateful: bool = True,
    ) -> Outcome:
        """Move the tenant's workload off its node; never raises for a refused move."""
        async with self.lock:
            found = self.fleet.find(tenant, workload)
            if found is None:
                return Outcome(StageOutcome.FAILED, reason=f"no workload {workload} is placed")
            source, spec = found
            key = f"{tenant}/{workload}"
            if trigger in _AUTOMATIC:  # a person's explicit ask (by hand, drain) is not held
                why = self.guard.why_not(key, source)
                if why is not None:
                    log.info("migration skipped", workload=key, reason=why)
                    return Outcome(StageOutcome.SKIPPED, reason=why)
            run = _Run(tenant, spec, source, trigger)
            await self._event(EventKind.MIGRATION_STARTED, run, f"moving off {source}")
            try:
                await self._carry_out(run, to=to, stateful=stateful)
            except MigrationFailed as exc:
                if run.frozen_at is not None:
                    await self._thaw(run)
                if run.staged_on is not None:  # never restored by a later deployment there
                    await self.drop_state(run.tenant, run.spec.name, run.staged_on)
                reasons = {**exc.reasons, "migration": str(exc)}
                log.warning("migration failed", workload=key, reason=str(exc), **exc.reasons)
                await self._event(EventKind.MIGRATION_FAILED, run, str(exc), reasons)
                return Outcome(StageOutcome.FAILED, reason=str(exc))
            self.guard.moved(key, source)
            await self._event(EventKind.MIGRATION_FINISHED, run, f"moved to {run.peer}")
            return Outcome(StageOutcome.MOVED, peer=run.peer)

    async def _carry_out(self, run: _Run, *, to: str | None, stateful: bool) -> None:
        t = time.monotonic()
        peer = await self._select_peer(run, to)
        t = run.stage("peer_selection", t)
        snapshot: str | None = None
        if stateful and self.fleet.node(run.source).online:
            frozen = await self._ask(
                run.tenant,
                run.source,
                NodeVerb.FREEZE,
                FreezeCommand(workload=run.spec.name),
                FrozenReply,
            )
            run.frozen_at, run.state_bytes, snapshot = (
                time.monotonic(),
                frozen.size,
                frozen.snapshot,
            )
            frozen_took = time.monotonic() - t
            run.staged_on = peer
            await self._transfer(run, peer, frozen)
            log.info(
                "state moved", workload=run.spec.name, bytes=frozen.size,
                freeze_s=round(frozen_took, 3),
                transfer_s=round(time.monotonic() - t - frozen_took, 3),
            )  # fmt: skip
            t = run.stage("state_transfer", t)
        move = MoveWorkload(workload=run.spec.name, to=peer, snapshot=snapshot, trigger=run.trigger)
        await self._scheduler(run.tenant, move)
        run.staged_on = None  # placed there: its restore is the peer's now
        t = run.stage("configuration", t)
        await self._activated(run, peer)
        run.stage("activation", t)
        if run.frozen_at is not None:
            run.freeze_s = round(time.monotonic() - run.frozen_at, 6)

    # -- stage 1 ------------------------------------------------------------------------------

    async def _select_peer(self, run: _Run, to: str | None) -> str:
        reasons: dict[str, str] = {}
        candidates = []
        for node in [to] if to is not None else self.fleet.live():
            if node == run.source:
                reasons[node] = "the source"
            elif not self.fleet.node(node).online:
                reasons[node] = "offline"
            elif (why := self.guard.avoid(node)) is not None:
                reasons[node] = why
            else:
                candidates.append(node)
        offers = await asyncio.gather(*(self._offer(run, n) for n in candidates))
        able = []
        for node, offer in zip(candidates, offers, strict=True):
            if isinstance(offer, str):
                reasons[node] = offer
            elif offer.level is not PeerLevel.RUN:
                reasons[node] = f"level {int(offer.level)}: {offer.reason}"
            else:
                able.append(node)
        if not able:
            raise MigrationFailed("no peer can run it now", reasons)
        pick = MoveWorkload(workload=run.spec.name, candidates=able, dry_run=True)
        try:
            chosen = await self._scheduler(run.tenant, pick)
        except MigrationFailed as exc:
            raise MigrationFailed(str(exc), {**reasons, **exc.reasons}) from None
        run.peer, run.level = chosen.to_node, int(PeerLevel.RUN)
        return chosen.to_node

    async def _offer(self, run: _Run, node: str) -> ResourceOffer | str:
        spec = run.spec
        request = ResourceRequest(
            workload=spec.name, runtime=spec.runtime.value, cpu=spec.cpu_limit or 0.0,
            memory_bytes=spec.memory_limit_bytes or 0,
        )  # fmt: skip
        try:
            return await self._ask(
                run.tenant, node, NodeVerb.RESOURCE_REQUEST, request, ResourceOffer
            )
        except MigrationFailed as exc:
            return str(exc)

    # -- stage 2 ------------------------------------------------------------------------------

    async def _transfer(self, run: _Run, peer: str, frozen: FrozenReply) -> None:
        """The snapshot goes from the source agent to the peer agent directly (over their site
        broker); the migrator only tells both ends and watches the peer's offset."""
        try:
            await hand_over(
                self, run.tenant, workload=run.spec.name, source=run.source, peer=peer,
                frozen=frozen, chunk_bytes=self.config.chunk_bytes, stall_s=self._timeout,
            )  # fmt: skip
        except TransferFailed as exc:
            raise MigrationFailed(str(exc), {peer: str(exc)}) from None

    async def tell_holders(self, tenant: str, workload: str, holders: list[str]) -> None:
        """Tell the scheduler leader where the workload's replica waits, so that re-placing it
        after its node's death it tries those nodes first (``ops/scheduler/holders``)."""
        topic = topics.ops("scheduler", HOLDERS_VERB)
        request = ReplicaHolders(tenant=tenant, workload=workload, holders=holders)
        try:
            await self.bus.request(topic, request, AckReply, timeout=self._timeout)
        except (RemoteError, BusError) as exc:  # the move-on after the death still holds
            log.warning("the scheduler was not told the holders", workload=workload,
                        error=str(exc))  # fmt: skip

    async def drop_state(self, tenant: str, workload: str, node: str) -> None:
        """Have ``node`` forget every staged snapshot of the workload (never restored then)."""
        try:
            await self._ask(tenant, node, NodeVerb.STATE_DROP,
                            StateDropCommand(workload=workload), AckReply)  # fmt: skip
        except MigrationFailed as exc:
            log.warning("staged state not dropped", node=node, workload=workload, error=str(exc))

    async def send_state(
        self, tenant: str, spec: WorkloadSpec, source: str, peer: str, frozen: FrozenReply
    ) -> None:
        """Move a snapshot staged on ``source`` to ``peer`` (the replicator's copies: the same
        peer-to-peer, chunked, checked, resumable transfer as a planned move's)."""
        await self._transfer(_Run(tenant, spec, source, MigrationTrigger.NODE_LOST), peer, frozen)

    async def ask(
        self, tenant: str, node: str, verb: NodeVerb, request: Request, model: type[R],
        *, timeout: float | None = None,
    ) -> R:  # fmt: skip
        """A command to ``node``'s agent (:meth:`_ask`), for the replicator and the transfer."""
        return await self._ask(tenant, node, verb, request, model, timeout=timeout)

    async def reroute(self, tenant: str, workload: str, to: str) -> None:
        """Ask the scheduler to re-home ``workload`` onto ``to`` (a dead node's workload, onto
        the holder of its replica; no state moves here)."""
        move = MoveWorkload(workload=workload, to=to, trigger=MigrationTrigger.NODE_LOST)
        await self._scheduler(tenant, move)

    async def offer(self, tenant: str, spec: WorkloadSpec, node: str) -> ResourceOffer | str:
        """``node``'s level for the workload, or why it did not answer."""
        return await self._offer(_Run(tenant, spec, node, MigrationTrigger.NODE_LOST), node)

    # -- stages 3 and 4 -----------------------------------------------------------------------

    async def _activated(self, run: _Run, peer: str) -> None:
        deadline = time.monotonic() + ACTIVATION_TIMEOUT_S
        while not self.fleet.running(peer, run.spec):
            if time.monotonic() > deadline:
                raise MigrationFailed(f"not running on {peer} after {ACTIVATION_TIMEOUT_S:g}s")
            await asyncio.sleep(0.05)

    async def _thaw(self, run: _Run) -> None:
        thaw = ThawCommand(workload=run.spec.name)
        try:
            await self._ask(run.tenant, run.source, NodeVerb.THAW, thaw, AckReply)
        except MigrationFailed as exc:
            log.warning("could not thaw the source", node=run.source, error=str(exc))

    # -- the bus ------------------------------------------------------------------------------

    async def _ask(
        self, tenant: str, node: str, verb: NodeVerb, request: Request, model: type[R],
        *, timeout: float | None = None,
    ) -> R:  # fmt: skip
        """A command to ``node``'s agent; a refusal or no answer is a :class:`MigrationFailed`
        naming the node. Commands name the workload's tenant (the agent checks it owns it)."""
        topic = topics.node_cmd(node, verb)
        for attempt in range(THROTTLE_RETRIES + 1):
            # fresh ids each time: the agent answers a replayed request id only once
            sent = request.model_copy(
                update={"tenant": tenant, "id": new_id(), "correlation_id": new_id()}
            )
            try:
                return await self.bus.request(topic, sent, model, timeout=timeout or self._timeout)
            except RemoteError as exc:
                wait = exc.error.details.get("retry_after_s")
                throttled = exc.code is ErrorCode.UNAVAILABLE and isinstance(wait, int | float)
                if throttled and attempt < THROTTLE_RETRIES:  # a long transfer waits its turn
                    await asyncio.sleep(min(float(wait or 0), 2.0))
                    continue
                raise MigrationFailed(f"{verb.value} refused: {exc.error.message}",
                                      {node: exc.error.message}) from None  # fmt: skip
            except BusError as exc:
                raise MigrationFailed(f"{verb.value}: {exc}", {node: str(exc)}) from None
        raise MigrationFailed(f"{verb.value}: throttled {THROTTLE_RETRIES} times", {node: "busy"})

    async def _scheduler(self, tenant: str, move: MoveWorkload) -> MoveReply:
        """``move`` to the scheduler leader on ``fm/v1/ops/scheduler/move`` (services only);
        ``unschedulable`` keeps its reason per node."""
        topic = topics.ops("scheduler", AppAction.MOVE)
        try:
            return await self.bus.request(
                topic, move.model_copy(update={"tenant": tenant}), MoveReply,
                timeout=self._timeout,
            )  # fmt: skip
        except RemoteError as exc:
            reasons = exc.error.details.get("reasons", {})
            raise MigrationFailed(f"scheduler: {exc.error.message}", dict(reasons)) from None
        except BusError as exc:
            raise MigrationFailed(f"scheduler: {exc}") from None

    @property
    def _timeout(self) -> float:
        return self.config.request_timeout_s

    async def _event(
        self, kind: EventKind, run: _Run, message: str, reasons: dict[str, str] | None = None
    ) -> None:
        event = Event.of(
            kind, run.data(reasons), tenant=run.tenant, app=run.spec.app, workload=run.spec.name,
            node=run.peer or run.source, message=message[:4096], source=self.config.client_id,
        )  # fmt: skip
        try:
            await self.bus.publish(topics.tenant_event(run.tenant, kind.value), event)
        except BusError as exc:
            log.warning("migration event not published", kind=kind.value, error=str(exc))
