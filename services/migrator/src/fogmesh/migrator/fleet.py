"""What the migrator knows of the nodes: facts, liveness, usage, and what each should run.

Fed by the agents' hello, state, heartbeat and actual messages and the scheduler's retained desired
states. A node is lost when its last will says offline (loud) or when it has missed
``offline_after`` heartbeats (silent), the same judgement as the registry's and the
scheduler's. Overload is CPU or memory above a threshold for a window, cleared only below a
lower threshold (hysteresis). A node whose site's links are all down is unreachable, neither
lost nor live (nothing moves off it or onto it), and a silent node of a wholly silent site
waits for its link's verdict (:mod:`fogmesh.protocol.partition`). A site's own migrator
(``home``) hears its site's nodes over its site broker: they are never unreachable to it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from fogmesh.protocol.mesh import LinkStatus
from fogmesh.protocol.node import Heartbeat, NodeFacts, NodeHello, NodeLiveness, Usage
from fogmesh.protocol.partition import PARTITION_GRACE_S, SiteLinks
from fogmesh.protocol.workload import (
    ActualState,
    DesiredState,
    WorkloadPhase,
    WorkloadSpec,
    WorkloadStatus,
)

__all__ = ["FleetView", "NodeView"]


@dataclass(slots=True)
class NodeView:
    """One node as the migrator sees it."""

    id: str
    facts: NodeFacts | None = None
    online: bool = False
    last_beat: float = 0.0
    interval_s: float = 5.0
    usage: Usage | None = None
    statuses: dict[str, WorkloadStatus] = field(default_factory=dict)
    desired: list[WorkloadSpec] = field(default_factory=list)
    generation: int = -1
    pinned: list[str] = field(default_factory=list)
    lost_at: float | None = None
    lost_how: str = ""
    hot_since: float | None = None


class FleetView:
    """Every node the migrator has heard of."""

    def __init__(self, *, offline_after: float = 3.0, home: str | None = None) -> None:
        self.offline_after = offline_after
        self.home = home
        """The site whose broker this view is fed from (a site migrator's), or None."""
        self.nodes: dict[str, NodeView] = {}
        self.links = SiteLinks()

    def node(self, node_id: str) -> NodeView:
        """The node's view (made on first mention)."""
        return self.nodes.setdefault(node_id, NodeView(node_id))

    # -- feeding ------------------------------------------------------------------------------

    def on_hello(self, msg: NodeHello) -> None:
        """Facts."""
        self.node(msg.node).facts = msg.facts

    def on_state(self, node_id: str, state: NodeLiveness, now: float | None = None) -> None:
        """Online, or offline by the last will (a loud death)."""
        view = self.node(node_id)
        if state is NodeLiveness.ONLINE:
            view.online, view.lost_at, view.lost_how = True, None, ""
            view.last_beat = max(view.last_beat, now or time.monotonic())
        elif view.lost_at is None:
            view.online, view.lost_at, view.lost_how = False, now or time.monotonic(), "last-will"

    def on_heartbeat(self, msg: Heartbeat, now: float | None = None) -> None:
        """Usage and workload statuses; a heartbeat revives a lost node."""
        view = self.node(msg.node)
        view.last_beat, view.interval_s = now or time.monotonic(), msg.interval_s
        view.usage = msg.usage
        if msg.workloads is not None:  # absent: unchanged (docs/agent.md, "Heartbeats")
            view.statuses = {f"{w.tenant}/{w.name}": w for w in msg.workloads}
        view.online, view.lost_at, view.lost_how = True, None, ""

    def on_actual(self, msg: ActualState) -> None:
        """Workload statuses as they change (sooner than the next heartbeat)."""
        self.node(msg.node).statuses = {f"{w.tenant}/{w.name}": w for w in msg.workloads}

    def on_link(self, msg: LinkStatus, now: float | None = None) -> None:
        """A link's status; when its site is back, its nodes' silence so far is not theirs."""
        was_cut, is_cut = self.links.update(msg)
        if was_cut and not is_cut:
            now = now or time.monotonic()
            for view in self.nodes.values():
                if view.facts is not None and view.facts.site == msg.broker and view.online:
                    view.last_beat = max(view.last_beat, now)

    def on_desired(self, msg: DesiredState) -> None:
        """What the scheduler wants the node to run (newest generation wins)."""
        view = self.node(msg.node)
        if msg.generation >= view.generation:
            view.generation, view.desired = msg.generation, list(msg.workloads)
            view.pinned = list(msg.pinned)

    # -- questions ----------------------------------------------------------------------------

    def judge(self, now: float | None = None) -> list[NodeView]:
        """Mark silent nodes lost; returns the nodes lost by this call."""
        now = now or time.monotonic()
        newly = []
        for view in self.nodes.values():
            silent = now - view.last_beat > self.offline_after * view.interval_s
            if silent and (self.unreachable(view) or self._held(view, now)):
                continue  # its site's link is down (or may be): not a death
            if view.online and view.last_beat and silent:
                view.online, view.lost_at, view.lost_how = False, now, "missed-heartbeats"
                newly.append(view)
        return newly

    def unreachable(self, view: NodeView) -> bool:
        """Whether the node's site is cut off (every link of it down) from here."""
        if view.facts is None or view.facts.site == self.home:
            return False
        return self.links.cut(view.facts.site)

    def _held(self, view: NodeView, now: float) -> bool:
        """Whether silent ``view`` waits for its site's link: its whole site is silent too."""
        late = now - view.last_beat - self.offline_after * view.interval_s
        if view.facts is None or late > PARTITION_GRACE_S or view.facts.site == self.home:
            return False
        site = view.facts.site
        heard = max(
            (v.last_beat for v in self.nodes.values() if v.facts and v.facts.site == site),
            default=0.0,
        )
        return self.links.holds(site, heard, now, quiet_s=1.5 * view.interval_s)

    def live(self) -> list[str]:
        """Nodes up now and reachable, sorted."""
        return sorted(
            n
            for n, v in self.nodes.items()
            if v.online and v.facts is not None and not self.unreachable(v)
        )

    def find(self, tenant: str, workload: str) -> tuple[str, WorkloadSpec] | None:
        """The node whose desired state holds the tenant's workload, and its spec."""
        for view in self.nodes.values():
            for spec in view.desired:
                if spec.tenant == tenant and spec.name == workload:
                    return view.id, spec
        return None

    def running(self, node_id: str, spec: WorkloadSpec) -> bool:
        """Whether the node's heartbeat shows the workload running with this spec."""
        status = self.node(node_id).statuses.get(f"{spec.tenant}/{spec.name}")
        return (
            status is not None
            and status.phase is WorkloadPhase.RUNNING
            and status.spec_hash == spec.spec_hash()
        )

    def overloaded(
        self, *, high: float, memory_high: float, clear: float, window_s: float, now: float
    ) -> list[str]:
        """Nodes above ``high`` CPU (or ``memory_high`` memory) percent for ``window_s``; a
        node counts as calm again only below ``clear`` (hysteresis)."""
        out = []
        for view in self.nodes.values():
            if not view.online or view.usage is None:
                view.hot_since = None
                continue
            cpu, mem = _percents(view.usage)
            if cpu > high or mem > memory_high:
                view.hot_since = view.hot_since if view.hot_since is not None else now
            elif cpu < clear and mem < clear:
                view.hot_since = None
            if view.hot_since is not None and now - view.hot_since >= window_s:
                out.append(view.id)
        return sorted(out)


def _percents(usage: Usage) -> tuple[float, float]:
    total = usage.memory_total_bytes
    return usage.cpu_percent, (100.0 * usage.memory_used_bytes / total) if total else 0.0
