"""State replication for unplanned moves: a dead node cannot hand its state over, so the
state of every running ``migration: stateful`` workload is copied to level-1 peers every
``replica_interval_s``, and on the node's death the replacement starts from that copy.

Each round the workload's agent stages a snapshot while the workload runs on (``freeze`` with
``hold`` false); an unchanged sha256 (the tar holds every file's size and mtime) sends nothing
and only renews the replica's age. A changed one goes to up to ``replica_peers`` peers that
answer the resource request with level 1 or 2 (level 2 first, the peers already holding it
kept) over the planned moves' chunked transfer (``state-put``), where it waits as the staged
snapshot of that workload: whichever holder the workload is created on next restores it
before its first start. The source's staged copy is dropped afterwards (``thaw``, which
releases no hold here).

On a node's death the scheduler re-places its workloads (docs/migrator.md); placed on a node
holding no replica, the workload is moved on (``ops/scheduler/move``, trigger ``node-lost``) to
a holder that can run it now, if there is one. The replicator publishes ``migration-started``
(trigger ``node-lost``, ``replica_age_s``) and, once the workload runs again,
``migration-finished`` naming the new node and whether it held the replica.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import structlog

from fogmesh.bus import Bus, MessageContext
from fogmesh.migrator.config import MigratorConfig
from fogmesh.migrator.fleet import FleetView
from fogmesh.migrator.mover import ACTIVATION_TIMEOUT_S, MigrationFailed, Mover
from fogmesh.protocol import BusError, topics
from fogmesh.protocol.commands import AckReply, NodeVerb
from fogmesh.protocol.events import Event, EventKind, MigrationData
from fogmesh.protocol.migration import (
    FreezeCommand,
    FrozenReply,
    MigrationTrigger,
    PeerLevel,
    ResourceOffer,
    ThawCommand,
)
from fogmesh.protocol.workload import MigrationKind, WorkloadSpec

__all__ = ["Replica", "Replicator"]

log = structlog.get_logger("fogmesh.migrator")


@dataclass(slots=True)
class Replica:
    """The newest copy of one workload's state and where it is."""

    spec: WorkloadSpec
    source: str
    sha256: str
    size: int
    holders: list[str]
    taken_at: float
    """When the state was last seen equal to the copy (monotonic)."""


@dataclass(slots=True)
class _Failover:
    replica: Replica
    age_s: float
    since: float = field(default_factory=time.monotonic)
    announced: bool = False
    rerouted: bool = False
    rerouted_to: str | None = None

    @property
    def spec(self) -> WorkloadSpec:
        return self.replica.spec

    @property
    def source(self) -> str:
        return self.replica.source

    @property
    def tenant(self) -> str:
        return self.replica.spec.tenant


class Replicator:
    """Keeps replicas of the stateful workloads and follows their failovers."""

    def __init__(self, bus: Bus, config: MigratorConfig, fleet: FleetView, mover: Mover) -> None:
        self.bus = bus
        self.config = config
        self.fleet = fleet
        self.mover = mover
        self.replicas: dict[str, Replica] = {}
        """``{tenant}/{workload}`` -> its newest replica."""
        self._tried: dict[str, float] = {}
        self._failovers: dict[str, _Failover] = {}

    def age(self, key: str, now: float | None = None) -> float | None:
        """How old the replica of ``key`` is now (None: it has none)."""
        replica = self.replicas.get(key)
        now = time.monotonic() if now is None else now
        return None if replica is None else round(now - replica.taken_at, 3)

    async def tick(self) -> None:
        """One pass: replicate what is due, then report failovers that finished."""
        now = time.monotonic()
        for node in self.fleet.live():
            for spec in list(self.fleet.node(node).desired):
                key = f"{spec.tenant}/{spec.name}"
                due = now - self._tried.get(key, -1e9) >= self.config.replica_interval_s
                stateful = spec.migration is MigrationKind.STATEFUL
                if (
                    stateful
                    and due
                    and key not in self._failovers
                    and (self.fleet.running(node, spec))
                ):
                    self._tried[key] = now
                    await self._replicate(node, spec, key)
        await self._follow()

    async def _replicate(self, node: str, spec: WorkloadSpec, key: str) -> None:
        async with self.mover.lock:  # never beside a migration of the same workload
            if not self.fleet.running(node, spec):
                return
            try:
                await self._copy(node, spec, key)
            except MigrationFailed as exc:
                log.warning("replication failed", workload=key, node=node, reason=str(exc))

    async def _copy(self, node: str, spec: WorkloadSpec, key: str) -> None:
        taken = time.monotonic()
        freeze = FreezeCommand(workload=spec.name, hold=False)
        staged = await self.mover.ask(spec.tenant, node, NodeVerb.FREEZE, freeze, FrozenReply)
        try:
            old = self.replicas.get(key)
            live = set(self.fleet.live())
            kept = [h for h in (old.holders if old else []) if h != node and h in live]
            unchanged = old is not None and old.source == node and old.sha256 == staged.sha256
            if old is not None and unchanged and kept and old.spec == spec:
                old.taken_at, old.holders = taken, kept  # unchanged: nothing to send
                return
            holders = await self._holders(node, spec, kept)
            if not holders:
                log.warning("no peer can hold the replica", workload=key, node=node)
                return
            sent = []
            for peer in holders:
                try:
                    await self.mover.send_state(spec.tenant, spec, node, peer, staged)
                    sent.append(peer)
                except MigrationFailed as exc:
                    log.warning("replica not sent", workload=key, peer=peer, reason=str(exc))
            if sent:
                self.replicas[key] = Replica(spec, node, staged.sha256, staged.size, sent, taken)
                log.info("state replicated", workload=key, node=node, peers=sent,
                         bytes=staged.size)  # fmt: skip
                # an older copy left on a node that holds this one no more is stale
                for stale in [h for h in (old.holders if old else []) if h not in sent]:
                    await self.mover.drop_state(spec.tenant, spec.name, stale)
                if old is None or sorted(old.holders) != sorted(sent):
                    await self.mover.tell_holders(spec.tenant, spec.name, sent)
        finally:
            thaw = ThawCommand(workload=spec.name)  # drops the staged copy; holds nothing here
            try:
                await self.mover.ask(spec.tenant, node, NodeVerb.THAW, thaw, AckReply)
            except MigrationFailed as exc:
                log.warning("staged replica not dropped", workload=key, error=str(exc))

    async def _holders(self, node: str, spec: WorkloadSpec, kept: list[str]) -> list[str]:
        """The peers to hold the copy: those holding it already, then level 2, then level 1."""
        others = [n for n in self.fleet.live() if n != node and n not in kept]
        offers = await asyncio.gather(*(self.mover.offer(spec.tenant, spec, n) for n in others))
        able = sorted(
            (o for o in offers if isinstance(o, ResourceOffer) and o.level >= PeerLevel.STORE),
            key=lambda o: (-int(o.level), o.node),
        )
        return [*kept, *(o.node for o in able)][: self.config.replica_peers]

    # -- a node's death -------------------------------------------------------------------------

    def on_lost(self, node: str) -> None:
        """``node`` died: its replicated workloads fail over (the scheduler re-places them)."""
        now = time.monotonic()
        for key, replica in self.replicas.items():
            if replica.source == node and key not in self._failovers:
                age = round(now - replica.taken_at, 3)
                self._failovers[key] = _Failover(replica, age)
                log.info("failing over from a replica", workload=key, node=node,
                         replica_age_s=age, holders=replica.holders)  # fmt: skip

    async def _follow(self) -> None:
        for key, fo in list(self._failovers.items()):
            if not fo.announced:
                fo.announced = True
                await self._event(EventKind.MIGRATION_STARTED, fo,
                                  f"{fo.source} lost: restarting from its replica "
                                  f"({fo.age_s:g}s old)", to=None, held=True)  # fmt: skip
            found = self.fleet.find(fo.tenant, fo.spec.name)
            placed = found is not None and found[0] != fo.source
            if placed and found is not None and found[0] not in fo.replica.holders:
                if not fo.rerouted:  # placed where no replica waits: onto a holder if one can
                    fo.rerouted = True
                    if await self._reroute(fo):
                        continue
                elif fo.rerouted_to is not None:
                    continue  # wait for the scheduler's move onto the holder
            if placed and found is not None and self.fleet.running(*found):
                to = found[0]
                held = to in fo.replica.holders
                message = (
                    f"restarted on {to} from its replica ({fo.age_s:g}s old)"
                    if held
                    else f"restarted on {to}, which did not hold its replica"
                )
                await self._event(EventKind.MIGRATION_FINISHED, fo, message, to=to, held=held)
                del self._failovers[key]
                self._tried.pop(key, None)
                # the holder's copy was restored; the other holders' are stale now: copy anew
                await self.forget(key, keep=to)
            elif time.monotonic() - fo.since > ACTIVATION_TIMEOUT_S:
                await self._event(EventKind.MIGRATION_FAILED, fo, "not running again", to=None,
                                  held=False)  # fmt: skip
                del self._failovers[key]

    async def forget(self, key: str, *, keep: str | None = None) -> None:
        """Drop the replica of ``key`` from its holders (but ``keep``, which restored it) and
        tell the scheduler it has none: a stale copy is never restored."""
        replica = self.replicas.pop(key, None)
        if replica is None:
            return
        tenant, name = replica.spec.tenant, replica.spec.name
        for holder in replica.holders:
            if holder != keep:
                await self.mover.drop_state(tenant, name, holder)
        await self.mover.tell_holders(tenant, name, [])

    async def on_app_event(self, event: Event, ctx: MessageContext) -> None:
        """An app deleted or deployed anew: its workloads' replicas are of no deployment any
        more, so their holders forget them (a new deployment starts from nothing)."""
        if event.kind not in {EventKind.APP_DELETED, EventKind.APP_DEPLOYED}:
            return
        for key in [k for k, r in self.replicas.items()
                    if (r.spec.tenant, r.spec.app) == (event.tenant, event.app)]:  # fmt: skip
            self._failovers.pop(key, None)
            self._tried.pop(key, None)
            log.info("replica dropped", workload=key, because=event.kind.value)
            async with self.mover.lock:
                await self.forget(key)

    async def _reroute(self, fo: _Failover) -> bool:
        """Ask the scheduler to move the workload onto a live holder that can run it now (its
        cold start where it landed is replaced by one from the replica)."""
        live = set(self.fleet.live())
        for holder in (h for h in fo.replica.holders if h in live):
            offer = await self.mover.offer(fo.tenant, fo.spec, holder)
            if isinstance(offer, ResourceOffer) and offer.level is PeerLevel.RUN:
                try:
                    await self.mover.reroute(fo.tenant, fo.spec.name, holder)
                except MigrationFailed as exc:
                    log.warning("could not move onto the replica's holder", holder=holder,
                                workload=fo.spec.name, reason=str(exc))  # fmt: skip
                    continue
                fo.rerouted_to = holder
                log.info("moved onto the replica's holder", workload=fo.spec.name, node=holder)
                return True
        return False

    async def _event(
        self, kind: EventKind, fo: _Failover, message: str, *, to: str | None, held: bool
    ) -> None:
        data = MigrationData(
            trigger=MigrationTrigger.NODE_LOST.value, from_=fo.source, to=to,
            level=int(PeerLevel.STORE) if held else None, stateful=held,
            state_bytes=fo.replica.size if held else None, replica_age_s=fo.age_s,
            duration_s=round(time.monotonic() - fo.since, 6),
            reasons={} if held else {"replica": f"held by {', '.join(fo.replica.holders)}"},
        )  # fmt: skip
        event = Event.of(
            kind, data, tenant=fo.tenant, app=fo.spec.app, workload=fo.spec.name,
            node=to or fo.source, message=message, source=self.config.client_id,
        )  # fmt: skip
        try:
            await self.bus.publish(topics.tenant_event(fo.tenant, kind.value), event)
        except BusError as exc:
            log.warning("failover event not published", kind=kind.value, error=str(exc))
