"""The scheduler's picture of the fleet, kept from the nodes' own messages on the bus.

``hello`` gives a node's facts, ``state`` says online / offline (the broker's last will says
offline the moment a session dies), ``heartbeat`` gives usage every ``interval_s``, ``actual``
says what runs. A node whose heartbeats are late by more than ``stale_after`` intervals is
stale (no new workloads); late by more than ``offline_after`` intervals it counts as offline,
exactly like a node whose state says so, and its workloads are placed again elsewhere.

A node whose site (``NodeFacts.site``) has every bridge link ``down`` (``fm/v1/mesh/{site}/
links/+``, :class:`~fogmesh.protocol.partition.SiteLinks`) is *unreachable*: alive as far as
anyone knows, not heard. It counts as stale (no new workloads) and never as offline, however
long its heartbeats are missing; :meth:`NodeTracker.unreachable_for` says for how long, so a
manifest's ``partition_tolerance_s`` can end the wait. When a link of the site is back its nodes
get ``offline_after`` intervals from then for their heartbeats to cross. A silent node whose
whole site is silent too stays stale for up to ``PARTITION_GRACE_S`` past its missed heartbeats,
while the far broker has not yet noticed the link's silence (see :mod:`fogmesh.protocol.partition`).
For ``HEAL_SETTLE_S`` after a site's link is back, a node of it that counts as offline (its last
will, queued at the site through the cut) keeps its workloads: what the site's own migrator did
meanwhile is still crossing the link (:mod:`fogmesh.scheduler.sites`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from fogmesh.protocol.mesh import LinkStatus
from fogmesh.protocol.node import Heartbeat, NodeFacts, NodeHello, NodeLiveness, Usage
from fogmesh.protocol.partition import PARTITION_GRACE_S, SiteLinks
from fogmesh.protocol.workload import ActualState, WorkloadPhase
from fogmesh.scheduler.placement import Liveness, NodeInfo, PlacedWorkload

__all__ = ["HEAL_SETTLE_S", "NodeRecord", "NodeTracker"]

HEAL_SETTLE_S = 10.0
"""How long after a site heals its offline nodes' workloads wait for the site's own moves."""


@dataclass(slots=True)
class NodeRecord:
    """What the scheduler knows about one node."""

    id: str
    facts: NodeFacts | None = None
    state: NodeLiveness | None = None
    usage: Usage | None = None
    interval_s: float | None = None
    last_heartbeat: float | None = None  # monotonic
    first_seen: float = 0.0  # monotonic
    running: frozenset[tuple[str, str]] = frozenset()  # (workload, spec_hash) running now


class NodeTracker:
    """Folds hello / state / heartbeat / actual into per-node records, and judges liveness."""

    def __init__(
        self,
        *,
        default_interval_s: float = 5.0,
        stale_after: float = 2.0,
        offline_after: float = 3.0,
        clock: Callable[[], float] = time.monotonic,
        heal_settle_s: float = HEAL_SETTLE_S,
    ) -> None:
        self.nodes: dict[str, NodeRecord] = {}
        self.default_interval_s = default_interval_s
        self.stale_after = stale_after
        self.offline_after = offline_after
        self.clock = clock
        self.version = 0
        """Counts changes that can make a pending workload placeable."""
        self.links = SiteLinks()
        self.cut_at: dict[str, float] = {}
        """When each cut site was seen cut (monotonic)."""
        self.heal_settle_s = heal_settle_s
        self.healed_at: dict[str, float] = {}
        """When each site was last seen back after a cut (monotonic)."""

    def _record(self, node_id: str) -> NodeRecord:
        rec = self.nodes.get(node_id)
        if rec is None:
            rec = self.nodes[node_id] = NodeRecord(node_id, first_seen=self.clock())
        return rec

    def on_hello(self, hello: NodeHello) -> None:
        """A node's facts."""
        rec = self._record(hello.node)
        rec.facts = hello.facts
        self.version += 1

    def on_state(self, node_id: str, state: NodeLiveness) -> None:
        """The node's retained online / offline state."""
        rec = self._record(node_id)
        if state is NodeLiveness.ONLINE and rec.state is not NodeLiveness.ONLINE:
            rec.last_heartbeat = None
            rec.first_seen = self.clock()
        rec.state = state
        self.version += 1

    def on_heartbeat(self, hb: Heartbeat) -> None:
        """Usage, and proof of life."""
        rec = self._record(hb.node)
        was = self.liveness(rec)
        rec.usage = hb.usage
        rec.interval_s = hb.interval_s
        rec.last_heartbeat = self.clock()
        if self.liveness(rec) is not was:
            self.version += 1

    def on_link(self, status: LinkStatus) -> None:
        """A bridge link's status: its site (the broker running it) may be cut off or back."""
        was_cut, is_cut = self.links.update(status)
        site = status.broker
        if is_cut and not was_cut:
            self.cut_at[site] = self.clock()
        elif was_cut and not is_cut:
            self.cut_at.pop(site, None)
            now = self.clock()
            self.healed_at[site] = now
            for rec in self.nodes.values():
                if rec.facts is not None and rec.facts.site == site:
                    # the cut's silence is not the node's: judge it from now on
                    rec.last_heartbeat = max(rec.last_heartbeat or now, now)
        if was_cut != is_cut:
            self.version += 1

    def unreachable_for(self, node_id: str) -> float | None:
        """Seconds ``node_id`` has been cut off with its site (None: it is not)."""
        rec = self.nodes.get(node_id)
        if rec is None or rec.facts is None or rec.state is NodeLiveness.OFFLINE:
            return None
        since = self.cut_at.get(rec.facts.site)
        return None if since is None else self.clock() - since

    def on_actual(self, actual: ActualState) -> None:
        """Which workloads run, with which spec (to retire an old version once the new runs)."""
        rec = self._record(actual.node)
        rec.running = frozenset(
            (w.name, w.spec_hash) for w in actual.workloads if w.phase is WorkloadPhase.RUNNING
        )

    def liveness(self, rec: NodeRecord) -> Liveness:
        """Online, stale or offline, from the state message and the heartbeat clock (an
        unreachable node is stale)."""
        if rec.state is NodeLiveness.OFFLINE or rec.facts is None:
            return Liveness.OFFLINE
        if rec.facts.site in self.cut_at:
            return Liveness.STALE  # unreachable: not offline, but nothing new goes there
        interval = rec.interval_s or self.default_interval_s
        since = rec.last_heartbeat if rec.last_heartbeat is not None else rec.first_seen
        now = self.clock()
        missed = (now - since) / interval
        if missed > self.offline_after and self._held(rec, now, missed * interval, interval):
            return Liveness.STALE
        if missed > self.offline_after:
            return Liveness.OFFLINE
        if missed > self.stale_after:
            return Liveness.STALE
        return Liveness.ONLINE

    def _held(self, rec: NodeRecord, now: float, silent: float, interval: float) -> bool:
        """Whether silent ``rec`` waits for its site's link: its whole site is silent too."""
        if rec.facts is None or silent > self.offline_after * interval + PARTITION_GRACE_S:
            return False
        site = rec.facts.site
        heard = max(
            (r.last_heartbeat or r.first_seen for r in self.nodes.values()
             if r.facts is not None and r.facts.site == site),
            default=0.0,
        )  # fmt: skip
        return self.links.holds(site, heard, now, quiet_s=1.5 * interval)

    def offline(self) -> set[str]:
        """Ids of the known nodes that count as offline now (their workloads go elsewhere),
        but for those of a site back for less than ``heal_settle_s``."""
        now = self.clock()
        return {
            n for n, rec in self.nodes.items()
            if self.liveness(rec) is Liveness.OFFLINE and not self._settling(rec, now)
        }  # fmt: skip

    def _settling(self, rec: NodeRecord, now: float) -> bool:
        healed = self.healed_at.get(rec.facts.site) if rec.facts is not None else None
        return healed is not None and now - healed < self.heal_settle_s

    def is_running(self, node_id: str, workload: str, spec_hash: str) -> bool:
        """Whether ``node_id`` reports ``workload`` running with that spec."""
        rec = self.nodes.get(node_id)
        return rec is not None and (workload, spec_hash) in rec.running

    def infos(self, placed: dict[str, list[PlacedWorkload]]) -> Iterable[NodeInfo]:
        """Planner input: every node with facts, and the workloads placed on it."""
        for node_id, rec in self.nodes.items():
            if rec.facts is None:
                continue
            yield NodeInfo(
                node_id, rec.facts, self.liveness(rec), rec.usage, placed.get(node_id, [])
            )
