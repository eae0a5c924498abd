"""One node's liveness as the judge holds it, its transitions, and the rule of its return
(plain data; :mod:`fogmesh.registry.liveness` judges with them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fogmesh.protocol import EventKind

__all__ = ["NodeLive", "Transition", "comes_back", "wait"]

ONLINE, STALE, OFFLINE, UNREACHABLE = "online", "stale", "offline", "unreachable"
LAST_WILL, MISSED, PARTITION = "last-will", "missed-heartbeats", "partition"


@dataclass(slots=True)
class NodeLive:
    """The tracker's view of one node (times are monotonic seconds)."""

    state: str
    last_seen: float
    interval: float | None
    boot_id: str = ""
    judge_after: float = 0.0
    reason: str = ""
    due: float | None = None
    """When its heap entry comes due (None: no entry, the node is offline or unreachable)."""
    newest_ts: float = 0.0
    """The ``ts`` of the newest heartbeat taken (an older one is not news)."""
    newest_seq: int = -1
    """The ``seq`` of that heartbeat."""
    held_until: float = 0.0
    """Its loss waits until then for its site's link status (see :attr:`LivenessTracker.hold`)."""
    replay_until: float = 0.0
    """Until then a will may be history replayed from its site's backlog (set by ``mend``)."""
    will_at: float = 0.0
    """A held will takes the node offline then, unless a newer boot speaks first (0: none)."""
    will_boot: str = ""
    """The boot of that will."""
    heard: bool = False
    """Whether this registry has heard the node itself (not only loaded it at start)."""
    waiting: list[tuple[float, str | None, str, float | None]] | None = None
    """Its join is claimed and not yet settled (:meth:`LivenessTracker.claimed`): the live
    signs ``(now, via, boot_id, interval)`` and wills (``via`` None) heard since, in order."""


@dataclass(frozen=True, slots=True)
class Transition:
    """A change of a node's liveness, and the event it makes (None: record it silently)."""

    node: str
    old: str | None
    new: str
    kind: EventKind | None
    reason: str = ""
    boot_id: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    retained: bool = False
    """Made by a retained message (a ``node-joined`` of a node a replayed hello introduced)."""


def comes_back(state: str, reason: str, via: str) -> bool:
    """Whether a live sign of life (``via``: hello, state or heartbeat) brings back a node in
    ``state`` (``node-back``): a stale or offline one, but one the last will took offline only
    on a live ``state: online`` or ``hello``."""
    if state not in (STALE, OFFLINE):
        return False
    return not (state == OFFLINE and reason == LAST_WILL and via == "heartbeat")


def wait(
    waiting: list[tuple[float, str | None, str, float | None]],
    now: float,
    via: str,
    boot_id: str,
    interval: float | None,
) -> None:
    """Note a live sign of a node whose claim waits; one after another sign is merged into it
    (the later time, boot and interval; a hello or state outweighs a heartbeat)."""
    _, was, boot, every = waiting[-1] if waiting else (now, None, "", None)
    if was is not None:
        strongest = was if via == "heartbeat" else via
        waiting[-1] = (now, strongest, boot_id or boot, interval or every)
        return
    waiting.append((now, via, boot_id, interval))
