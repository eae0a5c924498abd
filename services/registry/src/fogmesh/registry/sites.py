"""Tell a partition from a death: follow every link's status and the site each node names.

A node names its site in its hello (``NodeFacts.site``: the broker it is joined to, as the mesh
file names it); each bridge link publishes its status retained on both brokers under
``fm/v1/mesh/{broker}/links/{link}``, and its session at the far broker carries a last will
saying ``down``. While every link of a site says ``down``
(:class:`~fogmesh.protocol.partition.SiteLinks`), every node of that site that is not offline
is ``unreachable``: its silence is the link's, not its own, so it is not judged by its missed
heartbeats. A ``site-unreachable`` event says so once per site, ``site-reachable`` when a link
of the site is back (its nodes are online again, with a grace for their heartbeats to cross).

A node of a cut site that dies meanwhile is not seen dying: its will waits at the site broker
and crosses when the link does, and the registry takes it then.
"""

from __future__ import annotations

import functools
import time

import structlog

from fogmesh.bus import Bus, MessageContext
from fogmesh.protocol import Event, EventKind, LinkStatus, NodeHello, SiteEventData, topics
from fogmesh.protocol.partition import SiteLinks
from fogmesh.registry.ingest import Ingest, event_row
from fogmesh.registry.liveness import LivenessTracker
from fogmesh.registry.ops import EventOp

__all__ = ["SiteWatch"]

log = structlog.get_logger("fogmesh.registry.sites")

LINK_FILTER = topics.mesh_link_filter()
"""Every link's status (``topics.mesh_link`` for any broker and link)."""


class SiteWatch:
    """Marks the nodes of a site whose links are all down ``unreachable``, and back."""

    def __init__(self, tracker: LivenessTracker, ingest: Ingest) -> None:
        self.tracker = tracker
        self.ingest = ingest
        self.links = SiteLinks()
        self.site_of: dict[str, str] = {}
        """Each node's site, from its newest hello ('' for none)."""
        self.members: dict[str, set[str]] = {}
        """Each site's nodes."""
        self._heard: dict[str, tuple[float, float]] = {}
        """Per site: the ``now`` of a judging pass and the newest ``last_seen`` of its nodes."""
        tracker.hold = self.hold

    def attach(self, bus: Bus) -> None:
        """Subscribe to every link's status and (beside ingest) to every hello."""
        bus.subscribe(LINK_FILTER, LinkStatus, self.on_link)

    def nodes(self, site: str) -> list[str]:
        """The nodes whose hello names ``site``."""
        return sorted(self.members.get(site, ()))

    def hold(self, node: str, now: float, quiet_s: float) -> bool:
        """Whether silent ``node`` waits for its site's link: its whole site is silent too."""
        site = self.site_of.get(node, "")
        if not site or not self.links.names(site):
            return False  # no link to wait for: the site's nodes need not be looked at
        # One scan of the site per judging pass (one ``now``), not one per silent node: a
        # backlog of 10,000 silent nodes made that quadratic and starved the event loop.
        cached = self._heard.get(site)
        if cached is None or cached[0] != now:
            members = self.members.get(site, ())
            heard = max(
                (live.last_seen for n in members if (live := self.tracker.nodes.get(n))),
                default=0.0,
            )
            self._heard[site] = cached = (now, heard)
        return self.links.holds(site, cached[1], now, quiet_s=quiet_s)

    async def on_hello(self, msg: NodeHello) -> None:
        """Learn the node's site; a node of a cut site is unreachable from its hello on."""
        site = msg.facts.site
        old = self.site_of.get(msg.node)
        if old is not None and old != site:
            self.members.get(old, set()).discard(msg.node)
        self.site_of[msg.node] = site
        self.members.setdefault(site, set()).add(msg.node)
        if site and self.links.cut(site):
            await self.ingest.apply(self.tracker.cut([msg.node], time.monotonic()))

    async def on_link(self, msg: LinkStatus, ctx: MessageContext) -> None:
        """A link's status: cut or mend its site's nodes; an event when the site's state turns."""
        site = msg.broker
        if ctx.topic != topics.mesh_link(site, msg.link):
            log.warning("link status names another link than its topic", topic=ctx.topic)
            return
        cut_since = self.links.since(site)
        was_cut, is_cut = self.links.update(msg)
        nodes = self.nodes(site)
        now = time.monotonic()
        if is_cut:
            await self.ingest.apply(self.tracker.cut(nodes, now))
        else:
            # also after a registry restart, when nodes were loaded unreachable
            await self.ingest.apply(self.tracker.mend(nodes, now))
        if was_cut == is_cut:
            return
        data = SiteEventData(site=site, links=self.links.names(site), nodes=nodes)
        if is_cut:
            data.since = self.links.since(site)
        elif cut_since is not None:
            data.since, data.down_s = cut_since, max(0.0, round(time.time() - cut_since, 3))
        kind = EventKind.SITE_UNREACHABLE if is_cut else EventKind.SITE_REACHABLE
        log.warning("site " + kind.value, site=site, nodes=len(nodes), link=msg.link)
        self._record(
            Event.of(
                kind,
                data,
                source=self.ingest.source,
                message=f"site {site} {'cut off' if is_cut else 'reachable again'}"
                f" ({len(nodes)} nodes, link {msg.link} {msg.state.value})",
            )
        )

    def _record(self, event: Event) -> None:
        """Store the event and publish it once stored (as the liveness events are)."""
        self.ingest.writer.put(EventOp(event_row(event, None, time.time())))
        self.ingest.writer.after_commit(functools.partial(self.ingest.publish, event))
