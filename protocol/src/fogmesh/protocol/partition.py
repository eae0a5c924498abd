"""Which sites are cut off from here, from the retained status of every bridge link.

A site is the broker its nodes are joined to (``NodeFacts.site``); its links publish
:class:`~fogmesh.protocol.mesh.LinkStatus` on ``fm/v1/mesh/{broker}/links/{link}`` on both
brokers, retained, and the far broker's copy of the link's last will says ``down`` when a silent
partition ends the link's session there. A site is *cut* while every link its broker runs says
``down``: its nodes may well be alive, they are only not heard. The registry, the scheduler and
the migrator all judge it with this one class, so they agree.

The far broker notices a silent partition only after 1.5 of the link's keepalive periods (45 s
at the default 30 s), later than a node's missed heartbeats (30 s at 10 s and 3). So a silent
node of a site that runs links is not judged lost while its whole site is silent too (nothing
heard from any of its nodes for 1.5 heartbeat intervals), for up to :data:`PARTITION_GRACE_S`
more: within it the link's will makes the site cut, or a word from the site shows the link
works and the node's silence is its own. A site's silent death is thus lost that much later.
"""

from __future__ import annotations

from fogmesh.protocol.mesh import LinkState, LinkStatus

__all__ = ["PARTITION_GRACE_S", "SITE_TERM", "SiteLinks", "is_site_term", "site_generation"]

PARTITION_GRACE_S = 60.0
"""How long past its missed heartbeats a node of a silent site is held for its link's will."""

SITE_TERM = 1_000_000
"""The step of a site term: a desired state a cut-off site writes itself jumps its generation to
the next multiple of this, above every write the cloud made that the site has not seen (the
cloud's writes grow one by one), so an agent takes the site's; once the cloud has seen it, the
cloud's next write (the newest seen plus one) is newer again (docs/migrator.md)."""


def site_generation(seen: int) -> int:
    """The generation a site's own writer gives a node whose newest desired state is ``seen``."""
    return (max(seen, 0) // SITE_TERM + 1) * SITE_TERM


def is_site_term(generation: int, seen: int) -> bool:
    """Whether ``generation`` lies in a site term newer than ``seen``'s."""
    return generation // SITE_TERM > max(seen, 0) // SITE_TERM


class SiteLinks:
    """The newest status of every link, by the broker that runs it (no I/O here)."""

    def __init__(self) -> None:
        self.links: dict[tuple[str, str], LinkStatus] = {}

    def update(self, status: LinkStatus) -> tuple[bool, bool]:
        """Fold in ``status``; returns whether its site was cut before and is cut now.

        The last one to arrive wins, not the newest by ``ts``: a link's last will is made when
        its connection opens, so it is older by ``ts`` than the ``up`` it overrules.
        """
        before = self.cut(status.broker)
        held = self.links.get((status.broker, status.link))
        if (
            held is not None
            and status.state is LinkState.DOWN
            and status.since is None  # a will (a link's own "down" carries its time)
            and status.path
            and held.state is not LinkState.DOWN
            and held.path
            and held.path != status.path
        ):
            # the late will of a path the link has left: it runs on ``held.path``
            return before, before
        self.links[(status.broker, status.link)] = status
        return before, self.cut(status.broker)

    def cut(self, site: str) -> bool:
        """Whether ``site`` runs at least one link and every one of them is down."""
        states = [s.state for (b, _), s in self.links.items() if b == site]
        return bool(states) and all(s is LinkState.DOWN for s in states)

    def since(self, site: str) -> float | None:
        """Unix time the last of ``site``'s links went down (None: not cut, or unknown)."""
        if not self.cut(site):
            return None
        times = [s.since for (b, _), s in self.links.items() if b == site and s.since]
        return max(times) if times else None

    def names(self, site: str) -> list[str]:
        """``site``'s links as ``broker/link``."""
        return sorted(f"{b}/{link}" for (b, link) in self.links if b == site)

    def holds(self, site: str, heard: float, now: float, *, quiet_s: float) -> bool:
        """Whether a silent node of ``site`` must wait for the link's verdict: the site runs
        links, is not cut, and nothing was heard from any of its nodes since ``heard`` for
        ``quiet_s`` (the caller bounds the wait by :data:`PARTITION_GRACE_S`)."""
        if not site or self.cut(site) or not any(b == site for b, _ in self.links):
            return False
        return now - heard >= quiet_s
