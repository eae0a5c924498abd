"""A site's own writer of desired state while its WAN is down (docs/migrator.md, "During a
partition").

One migrator in site mode runs per site, on the site broker (``site`` in its config, lease
``migrator-{site}``). While every link of its site says ``down`` it is the only writer of its
site's nodes' desired state: a node of the site that dies (its last will, or missed heartbeats
heard over the site broker) has its workloads moved to a live peer of the same site. Each write
takes a site term (:func:`fogmesh.protocol.partition.site_generation`), so an agent prefers it
over any write the cloud made that the site has not seen, and carries ``site_writer``, so the
scheduler adopts it on healing. Once a link is up again it writes nothing: the scheduler, which
sees those writes cross the link, records them as moves and writes again from then on.

Inside the site it knows less than the scheduler: no manifest, only the specs. It keeps a
workload the scheduler marked pinned (``DesiredState.pinned``) on its dead node, and picks among
the live peers of the site one with the workload's runtime, room for its CPU and memory limits
(after the limits of what the peer runs already) and no workload of the same name, then the one
with the fewest workloads.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import structlog

from fogmesh.bus import Bus
from fogmesh.migrator.fleet import FleetView, NodeView
from fogmesh.migrator.guard import Guard
from fogmesh.protocol import BusError, topics
from fogmesh.protocol.events import Event, EventKind, MigrationData
from fogmesh.protocol.migration import MigrationTrigger
from fogmesh.protocol.partition import site_generation
from fogmesh.protocol.topics import NodeChannel
from fogmesh.protocol.workload import DesiredState, WorkloadSpec

__all__ = ["SiteMove", "SiteWriter", "pick_peer"]

log = structlog.get_logger("fogmesh.migrator.site")


@dataclass(frozen=True, slots=True)
class SiteMove:
    """One move a site made on its own while cut off."""

    tenant: str
    workload: str
    from_node: str
    to_node: str
    lost_s: float
    """Seconds from the node's loss (as this migrator saw it) to the desired states written."""


def _room(view: NodeView, spec: WorkloadSpec) -> str | None:
    """Why ``view`` cannot take ``spec`` (None: it can)."""
    facts = view.facts
    if facts is None:
        return "no facts"
    if facts.runtimes and spec.runtime.value not in facts.runtimes:
        return f"no {spec.runtime.value} runtime"
    if any(s.tenant == spec.tenant and s.name == spec.name for s in view.desired):
        return "runs it already"
    cpu = sum(s.cpu_limit or 0.0 for s in view.desired)
    if spec.cpu_limit and cpu + spec.cpu_limit > facts.cpu_count:
        return f"cpu: {facts.cpu_count - cpu:g} cores left"
    memory = sum(s.memory_limit_bytes or 0 for s in view.desired)
    if spec.memory_limit_bytes and memory + spec.memory_limit_bytes > facts.memory_bytes:
        return "memory"
    return None


def pick_peer(fleet: FleetView, site: str, source: str, spec: WorkloadSpec, guard: Guard) -> str:
    """The live peer of ``site`` that takes ``spec`` off ``source``; raises ``LookupError``
    with the reason per node when none can."""
    reasons: dict[str, str] = {}
    fits: list[NodeView] = []
    for node in fleet.live():
        view = fleet.node(node)
        if node == source or view.facts is None or view.facts.site != site:
            continue
        why = guard.avoid(node) or _room(view, spec)
        if why is None:
            fits.append(view)
        else:
            reasons[node] = why
    if not fits:
        raise LookupError(", ".join(f"{n}: {r}" for n, r in sorted(reasons.items())) or "no peer")
    return min(fits, key=lambda v: (len(v.desired), v.id)).id


class SiteWriter:
    """Moves a dead node's workloads to a peer of its site while the site is cut off."""

    def __init__(self, bus: Bus, site: str, fleet: FleetView, guard: Guard, source: str) -> None:
        self.bus, self.site, self.fleet, self.guard, self.source = bus, site, fleet, guard, source
        self.moves: list[SiteMove] = []
        """Every move this writer made (newest last)."""
        self._refused: set[tuple[str, str]] = set()

    @property
    def cut(self) -> bool:
        """Whether the site is cut off from the cloud now (every link of it down)."""
        return self.fleet.links.cut(self.site)

    async def tick(self) -> None:
        """Move the workloads of the site's lost nodes, while the site is cut off."""
        if not self.cut:
            self._refused.clear()
            return
        for view in list(self.fleet.nodes.values()):
            if view.lost_at is None or view.facts is None or view.facts.site != self.site:
                continue
            for spec in sorted(view.desired, key=lambda s: (s.tenant, s.name)):
                if not self.cut:
                    return  # the link is back: from now on the scheduler writes
                await self._move(view, spec)

    async def _move(self, dead: NodeView, spec: WorkloadSpec) -> None:
        key = (dead.id, f"{spec.tenant}/{spec.name}")
        if spec.name in self._pinned(dead):
            if key not in self._refused:
                self._refused.add(key)
                log.info("pinned workload stays on its lost node", node=dead.id,
                         workload=spec.name)  # fmt: skip
            return
        try:
            peer = pick_peer(self.fleet, self.site, dead.id, spec, self.guard)
        except LookupError as exc:
            if key not in self._refused:
                self._refused.add(key)
                log.warning("no peer of the site can take a lost node's workload",
                            node=dead.id, workload=spec.name, reasons=str(exc))  # fmt: skip
                await self._event(EventKind.MIGRATION_FAILED, spec, dead.id, None, str(exc))
            return
        target = self.fleet.node(peer)
        # The peer first: a workload is never in no node's desired state, and the dead node
        # runs nothing meanwhile.
        try:
            await self._write(target, [*target.desired, spec])
            await self._write(dead, [s for s in dead.desired if s.name != spec.name
                                     or s.tenant != spec.tenant])  # fmt: skip
        except BusError as exc:  # the site broker is away: the next tick tries again
            log.warning("site desired state not written", node=dead.id, error=str(exc))
            return
        lost_s = time.monotonic() - (dead.lost_at or time.monotonic())
        self.moves.append(SiteMove(spec.tenant, spec.name, dead.id, peer, lost_s))
        self.guard.moved(f"{spec.tenant}/{spec.name}", dead.id)
        log.warning("site moved a lost node's workload while cut off", site=self.site,
                    workload=spec.name, tenant=spec.tenant, from_node=dead.id, to=peer,
                    after_s=round(lost_s, 2))  # fmt: skip
        await self._event(EventKind.MIGRATION_FINISHED, spec, dead.id, peer, f"moved to {peer}")

    @staticmethod
    def _pinned(view: NodeView) -> set[str]:
        return set(view.pinned)

    async def _write(self, view: NodeView, workloads: list[WorkloadSpec]) -> None:
        # Every write takes a term of its own: the scheduler may adopt (and rewrite) a node
        # after the first of a cut's writes crossed and before the next did; the next must be
        # newer than that rewrite too, or the agent would hold one and the scheduler the other.
        state = DesiredState(
            node=view.id,
            generation=site_generation(view.generation),
            workloads=sorted(workloads, key=lambda s: (s.tenant, s.name)),
            site_writer=self.site,
            pinned=list(view.pinned),
            source=self.source,
        )
        # retained, like the scheduler's: an agent that (re)connects reads it; queue=False,
        # since a write that could not reach the site broker now must not land after the heal
        await self.bus.publish(
            topics.node(view.id, NodeChannel.DESIRED), state, retain=True, queue=False
        )
        self.fleet.on_desired(state)

    async def _event(
        self, kind: EventKind, spec: WorkloadSpec, source: str, peer: str | None, message: str
    ) -> None:
        data = MigrationData(
            trigger=MigrationTrigger.NODE_LOST.value, from_=source, to=peer, stateful=False,
            reasons={} if peer else {"migration": message},
        )  # fmt: skip
        event = Event.of(
            kind, data, tenant=spec.tenant, app=spec.app, workload=spec.name,
            node=peer or source, message=f"{message} (site {self.site}, cut off)",
            source=self.source,
        )  # fmt: skip
        try:
            await self.bus.publish(topics.tenant_event(spec.tenant, kind.value), event)
        except BusError as exc:
            log.warning("site migration event not published", kind=kind.value, error=str(exc))
