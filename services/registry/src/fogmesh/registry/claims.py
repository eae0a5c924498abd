"""A node's join claim lost: what the replica tells instead (pure; the writer calls it).

Replicas that each take a node for new (their trackers do not know it, and their snapshots of
the others' nodes are older than its row) each make its ``node-joined`` with a claim
(:class:`~fogmesh.registry.ops.EventOp`): the one whose batch creates the node's row tells the
join. A batch that loses the claim meets the row another replica stored, and the node is then
what it would have been had the snapshot shown that row (a node handed over): the join's sign
of life brings a stale or offline node back (``node-back``, ``data.from`` the stored state),
recorded with the node's ``online`` in that batch and published once it is committed; a node
stored online (or unreachable), or a sign that brings nothing back (a retained message, or a
heartbeat of a node the last will took offline), tells nothing, and the stored state stands.
What the node says until that batch is committed waits, and is judged from the state the claim
settled (``LivenessTracker.settle``). The will of a node the replica knows neither itself nor
from its snapshot is claimed likewise: a node never stored is created offline, silently; one
another replica stored, not offline, is lost (``node-lost`` from the stored state).
"""

from __future__ import annotations

from typing import Any

from fogmesh.protocol import Event, EventKind
from fogmesh.registry.events import transition_event
from fogmesh.registry.liveness import Transition, comes_back
from fogmesh.registry.nodelive import LAST_WILL, OFFLINE
from fogmesh.registry.ops import JoinClaim

__all__ = ["told_instead"]


def told_instead(claim: JoinClaim, state: str, reason: str, boot_id: str) -> Event | None:
    """The event a lost ``claim`` tells of its node, stored ``state`` (its ``reason`` and
    ``boot_id``), in the join's place: ``node-back``, or None (the stored state stands). A
    will's claim (``via`` will) tells ``node-lost`` of a node not stored offline."""
    if claim.via == "will":
        if state == OFFLINE:
            return None
        data: dict[str, Any] = {"from": state, "reason": LAST_WILL}
        lost = Transition(claim.node, state, OFFLINE, EventKind.NODE_LOST, LAST_WILL, None, data)
        return transition_event(lost, claim.source)
    if claim.retained or not comes_back(state, reason, claim.via):
        return None
    rebooted = bool(claim.boot_id) and bool(boot_id) and claim.boot_id != boot_id
    data = {"from": state, "via": claim.via, "rebooted": rebooted}
    back = EventKind.NODE_BACK
    tr = Transition(claim.node, state, "online", back, claim.via, claim.boot_id or None, data)
    return transition_event(tr, claim.source)
