"""Judge each node's liveness from what it says and what it stops saying (no I/O here).

States: ``online`` -> ``stale`` (no heartbeat for more than 1.5 intervals) -> ``offline`` (none
for ``missed`` intervals, or at once on the last will). Signs of life revive a stale or
offline node (``node-back``), with one exception: a node the last will declared offline comes
back only on a live ``state: online`` or ``hello``, never on a stray late heartbeat.

Retained messages (replayed when the registry subscribes) are not signs of life: they may be
old. They can still introduce a node never seen before and deliver a last will that fired while
the registry was away. A node behind a cut link (:meth:`LivenessTracker.cut`, from the site's
link status) is ``unreachable``: it has no deadline, so its silence makes it neither stale nor
offline; only its site's link coming back (:meth:`LivenessTracker.mend`, online with a grace of
``missed`` intervals) or its last will change that. At start every node the database holds as
online, stale or unreachable gets a grace of ``missed`` intervals before it is judged, so a
restarted registry does not flap live nodes.

A will that arrives while its node is unreachable, or within ``hold_s`` after its site came
back, may be history: a cut's backlog replays the wills of agent instances that died inside the
site, each followed by its successor's hello. Such a will is held for 1.5 times the shorter of
the node's heartbeat interval and ``default_interval`` (an idle agent's heartbeats are minutes
apart, its successor's hello follows the will in the backlog) and dropped if a newer boot of the
agent speaks meanwhile (``hello`` or ``state: online`` with another ``boot_id``); otherwise it
takes the node offline then. Any other will: offline at once.

A node whose join is claimed (:meth:`LivenessTracker.claimed`: the replica whose batch creates
its row tells it) is not judged, and its live signs and will wait, until :meth:`settle` says
what the claim found (joined, back, or as another replica stored it): they are then judged
from that state, in order.

Judging is driven by a heap of deadlines, not by a scan: each node that is not offline has one
entry, the earliest moment its state could change. A heartbeat only moves ``last_seen``; when
an entry comes due, the node's real deadline is computed again and the entry pushed back if it
is not yet reached. A tick costs the nodes due, not the fleet (10,000 nodes at 10 s: about
700 entries a second instead of 10,000 per tick).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from typing import Any

from fogmesh.protocol import EventKind
from fogmesh.protocol.partition import PARTITION_GRACE_S
from fogmesh.registry.nodelive import (
    LAST_WILL,
    MISSED,
    OFFLINE,
    ONLINE,
    PARTITION,
    STALE,
    UNREACHABLE,
    NodeLive,
    Transition,
    comes_back,
    wait,
)

__all__ = ["LivenessTracker", "NodeLive", "Transition", "comes_back"]


class LivenessTracker:
    """All nodes' liveness; methods take ``now`` (monotonic) and return the transitions."""

    def __init__(self, *, missed: float = 3.0, default_interval: float = 10.0) -> None:
        if missed < 2:
            raise ValueError("missed must be at least 2 heartbeat intervals")
        self.missed = missed
        self.default_interval = default_interval
        self.nodes: dict[str, NodeLive] = {}
        self._due: list[tuple[float, str]] = []
        self.hold: Callable[[str, float, float], bool] | None = None
        """``hold(node, now, quiet_s)``: whether a node past its missed heartbeats waits (up to
        ``hold_s`` more) for its site's link to be judged (the site watch sets it)."""
        self.hold_s = PARTITION_GRACE_S
        self.elsewhere: Callable[[str], tuple[float, str] | None] | None = None
        """Replicas only (see :mod:`fogmesh.registry.replicas`): ``elsewhere(node)`` is the
        newest sign of life any replica stored (monotonic here) and the stored state."""

    def interval(self, live: NodeLive) -> float:
        """The heartbeat interval to judge ``live`` by."""
        return live.interval or self.default_interval

    def load(
        self,
        node: str,
        state: str,
        interval: float | None,
        *,
        boot_id: str,
        reason: str,
        now: float,
    ) -> None:
        """A node from the database at start; live ones get a grace before being judged."""
        live = NodeLive(state, now, interval, boot_id, reason=reason)
        live.judge_after = now + self.missed * self.interval(live)
        self.nodes[node] = live
        if state != OFFLINE:
            self._schedule(node, live, live.judge_after)

    def state(self, node: str) -> str | None:
        """The node's current state, or None if unknown."""
        live = self.nodes.get(node)
        return None if live is None else live.state

    def alive(
        self,
        node: str,
        now: float,
        *,
        retained: bool,
        via: str,
        boot_id: str | None = None,
        interval: float | None = None,
    ) -> list[Transition]:
        """A sign of life: ``via`` is ``hello``, ``state`` or ``heartbeat``."""
        live = self.nodes.get(node)
        if live is not None and live.waiting is not None and not retained:
            wait(live.waiting, now, via, boot_id or "", interval)
            return []
        stored = None if live is not None or self.elsewhere is None else self.elsewhere(node)
        if stored is not None:  # another replica's node, handed over: no join
            state = stored[1] if stored[1] in (ONLINE, STALE, OFFLINE) else ONLINE
            live = NodeLive(state, stored[0], interval, boot_id or "", judge_after=now)
            self.nodes[node] = live
            if state == ONLINE:
                self._schedule(node, live, self._deadline(live, now))
        if live is None:
            live = NodeLive(ONLINE, now, interval, boot_id or "", judge_after=now)
            live.heard = not retained
            self.nodes[node] = live
            self._schedule(node, live, self._deadline(live, now))
            joined = EventKind.NODE_JOINED
            return [Transition(node, None, ONLINE, joined, via, live.boot_id, retained=retained)]
        rebooted = bool(boot_id) and bool(live.boot_id) and boot_id != live.boot_id
        if boot_id:
            live.boot_id = boot_id
            if live.will_at and not retained and boot_id != live.will_boot:
                live.will_at = 0.0  # its boot ended and a newer one runs: the will is history
                if live.state == UNREACHABLE:
                    live.due = None  # unreachable nodes are not judged (see cut)
        if interval is not None and interval != live.interval:
            live.interval = interval
            if live.due is not None:  # a shorter interval may bring the deadline forward
                self._schedule(node, live, self._deadline(live, now))
        if retained:
            return []
        live.last_seen, live.heard = now, True
        if not comes_back(live.state, live.reason, via):
            return []  # online already; an unreachable one is back when its link says so
        old, live.state, live.reason = live.state, ONLINE, ""
        live.judge_after = now
        self._schedule(node, live, self._deadline(live, now))
        data = {"from": old, "via": via, "rebooted": rebooted}
        return [Transition(node, old, ONLINE, EventKind.NODE_BACK, via, live.boot_id, data)]

    def claimed(self, node: str) -> None:
        """``node``'s join is claimed (see :mod:`fogmesh.registry.claims`): its live signs and
        wills wait, and it is not judged, until :meth:`settle` tells what the claim found."""
        live = self.nodes.get(node)
        if live is not None and live.waiting is None:
            live.waiting = []

    def settle(
        self,
        node: str,
        state: str | None,
        reason: str = "",
        *,
        seen: float,
        now: float,
        boot_id: str = "",
    ) -> list[Transition]:
        """``node``'s join claim is settled: won, or lost with a ``node-back`` told (``state``
        None: it is online as joined), or lost to a row another replica stored, ``state`` (its
        ``reason``, ``boot_id``; ``seen``: its stored sign of life, monotonic here), of which
        this replica recorded nothing: it is as stored, unless it changed here since its join.
        Then the signs and wills that waited are taken in order; returns their transitions."""
        live = self.nodes.get(node)
        if live is None:
            return []
        waited, live.waiting = live.waiting or [], None
        if live.state == ONLINE and state in (STALE, OFFLINE):
            live.state, live.reason, live.boot_id = state, reason, live.boot_id or boot_id
            if not live.heard:  # known from a retained message only: judged by the stored sign
                live.last_seen = seen
        if live.state == OFFLINE:
            live.due = None
        elif live.state != UNREACHABLE:
            self._schedule(node, live, self._deadline(live, now))
        out: list[Transition] = []
        for at, via, boot, interval in waited:
            if via is None:
                out += self.last_will(node, at, boot_id=boot)
            else:
                out += self.alive(node, at, retained=False, via=via, boot_id=boot or None,
                                  interval=interval)  # fmt: skip
        return out

    def last_will(self, node: str, now: float, *, boot_id: str) -> list[Transition]:
        """``state: offline`` (the last will, or a clean goodbye): offline at once."""
        live = self.nodes.get(node)
        if live is not None and live.waiting is not None:
            live.waiting.append((now, None, boot_id, None))
            return []
        stored = None if live is not None or self.elsewhere is None else self.elsewhere(node)
        if live is None and (stored is None or stored[1] == OFFLINE):
            self.nodes[node] = NodeLive(OFFLINE, now, None, boot_id, reason=LAST_WILL)
            return [] if stored else [Transition(node, None, OFFLINE, None, LAST_WILL, boot_id)]
        if live is None:  # another replica's node, handed over: its will is news here
            assert stored is not None
            live = NodeLive(stored[1], stored[0], None, boot_id, judge_after=now)
            self.nodes[node] = live
        if boot_id and live.boot_id and boot_id != live.boot_id:
            return []  # the will of an earlier boot, arriving after the node came back
        if live.state == OFFLINE:
            live.reason = LAST_WILL
            return []
        if live.state == UNREACHABLE or now < live.replay_until:
            # maybe replayed from a cut's backlog: wait for a newer boot's hello to follow
            hold = 1.5 * min(self.interval(live), self.default_interval)
            live.will_at, live.will_boot = now + hold, boot_id
            self._schedule(node, live, live.will_at)
            return []
        return [self._will_taken(node, live)]

    def _will_taken(self, node: str, live: NodeLive) -> Transition:
        """The will takes ``live`` offline."""
        live.will_at = 0.0
        old, live.state, live.reason = live.state, OFFLINE, LAST_WILL
        live.due = None
        data = {"from": old, "reason": LAST_WILL}
        return Transition(node, old, OFFLINE, EventKind.NODE_LOST, LAST_WILL, None, data)

    def fresh(self, node: str, ts: float, seq: int) -> bool:
        """Whether a heartbeat (made at ``ts``, numbered ``seq``) is news: not older than the
        newest taken from ``node`` by both (an agent's restart resets ``seq``, a clock stepped
        back lowers ``ts``: either alone is not old). If so it becomes the newest. Heartbeats
        queued through a partition arrive late and in a burst: a straggler or a duplicate must
        neither count as a sign of life nor be stored."""
        live = self.nodes.get(node)
        if live is None:
            return True
        if ts <= live.newest_ts and seq <= live.newest_seq:
            return False
        live.newest_ts, live.newest_seq = ts, seq
        return True

    def cut(self, nodes: list[str], now: float) -> list[Transition]:
        """``nodes``' site lost its link: each that is not offline becomes ``unreachable``
        (silently: the site's own event tells it) and is no longer judged."""
        out: list[Transition] = []
        for node in nodes:
            live = self.nodes.get(node)
            if live is None or live.state == OFFLINE:
                continue
            if live.state == UNREACHABLE:
                live.due = None  # loaded so at start: no longer judged now the cut is known
                continue
            old, live.state, live.reason, live.due = live.state, UNREACHABLE, PARTITION, None
            live.held_until = 0.0
            out.append(Transition(node, old, UNREACHABLE, None, PARTITION, None, {"from": old}))
        return out

    def mend(self, nodes: list[str], now: float) -> list[Transition]:
        """``nodes``' site has its link back: each unreachable one is online, with a grace of
        ``missed`` intervals for its first heartbeat to cross (silently, as :meth:`cut`)."""
        out: list[Transition] = []
        for node in nodes:
            live = self.nodes.get(node)
            if live is None or live.state != UNREACHABLE:
                continue
            live.state, live.reason, live.last_seen = ONLINE, "", now
            live.judge_after = now + self.missed * self.interval(live)
            live.replay_until = now + self.hold_s
            due = live.judge_after if not live.will_at else min(live.judge_after, live.will_at)
            self._schedule(node, live, max(due, math.nextafter(now, math.inf)))  # a held will
            out.append(Transition(node, UNREACHABLE, ONLINE, None, PARTITION, None))
        return out

    def tick(self, now: float) -> list[Transition]:
        """Judge the nodes whose deadline has come, by the time since each was last heard."""
        out: list[Transition] = []
        heap = self._due
        while heap and heap[0][0] <= now:
            due, node = heapq.heappop(heap)
            live = self.nodes.get(node)
            if live is None or live.due != due:
                continue  # superseded by a later entry of the same node
            live.due = None
            if live.waiting is not None:
                continue  # its claim is not settled yet: judged from then on (settle)
            transition = self._judge(node, live, now)
            if transition is not None:
                out.append(transition)
            if live.state != OFFLINE:
                self._schedule(node, live, self._deadline(live, now))
        return out

    def _judge(self, node: str, live: NodeLive, now: float) -> Transition | None:
        """The transition ``live`` makes at ``now``, if any (it is applied to ``live``)."""
        if live.will_at and now >= live.will_at:
            return self._will_taken(node, live)  # no newer boot spoke: the will holds
        if now < live.judge_after:
            return None
        if self.elsewhere is not None and not self._seen_elsewhere(node, live):
            return None
        if self.elsewhere is not None and not live.heard:
            return self._judge_orphan(node, live, now)
        interval = self.interval(live)
        silent = now - live.last_seen
        data: dict[str, Any] = {"silent_s": round(silent, 3), "interval_s": interval}
        if silent > self.missed * interval and self._held(node, live, now, silent, interval):
            if live.state == ONLINE:
                live.state = STALE
                return Transition(node, ONLINE, STALE, EventKind.NODE_STALE, "late", None, data)
            return None
        if silent > self.missed * interval:
            old, live.state, live.reason = live.state, OFFLINE, MISSED
            data.update({"from": old, "reason": MISSED})
            return Transition(node, old, OFFLINE, EventKind.NODE_LOST, MISSED, None, data)
        if silent > 1.5 * interval and live.state == ONLINE:
            live.state = STALE
            return Transition(node, ONLINE, STALE, EventKind.NODE_STALE, "late", None, data)
        return None

    def _held(self, node: str, live: NodeLive, now: float, silent: float, interval: float) -> bool:
        """Whether the loss of ``node`` waits for its site's link (see :attr:`hold`)."""
        held = (
            self.hold is not None
            and silent <= self.missed * interval + self.hold_s
            and self.hold(node, now, 1.5 * interval)
        )
        live.held_until = min(now + interval, live.last_seen + self.missed * interval + self.hold_s)
        if not held:
            live.held_until = 0.0
        return held

    def _seen_elsewhere(self, node: str, live: NodeLive) -> bool:
        """Take the replicas' newest sign of life of ``node``; False when they stored it
        offline (then it is offline here too, silently: that replica told the fleet)."""
        assert self.elsewhere is not None
        other = self.elsewhere(node)
        if other is None:
            return True
        seen, state = other
        if state == OFFLINE and seen <= live.last_seen and live.state != OFFLINE:
            live.state, live.reason, live.due = OFFLINE, MISSED, None
            return False
        live.last_seen = max(live.last_seen, seen)
        return True

    def _judge_orphan(self, node: str, live: NodeLive, now: float) -> Transition | None:
        """A node another replica hears: judged here only once that replica is evidently
        gone too (silent for one interval past ``missed``, and not stored offline)."""
        interval = self.interval(live)
        silent = now - live.last_seen
        if silent <= (self.missed + 1) * interval:
            return None
        old, live.state, live.reason = live.state, OFFLINE, MISSED
        data = {"silent_s": round(silent, 3), "interval_s": interval, "from": old}
        data["reason"] = MISSED
        return Transition(node, old, OFFLINE, EventKind.NODE_LOST, MISSED, None, data)

    def _deadline(self, live: NodeLive, now: float) -> float:
        """The earliest moment after ``now`` at which ``live`` may change state."""
        if live.held_until > now:
            due = live.held_until  # judged again each interval while held
        else:
            factor = 1.5 if live.state == ONLINE else self.missed
            if self.elsewhere is not None and not live.heard:
                factor = self.missed + 1  # another replica's node (see _judge_orphan)
            due = max(live.judge_after, live.last_seen + factor * self.interval(live))
        if live.will_at > now:
            due = min(due, live.will_at)  # a held will (see last_will)
        return due if due > now else math.nextafter(now, math.inf)

    def _schedule(self, node: str, live: NodeLive, due: float) -> None:
        live.due = due
        heapq.heappush(self._due, (due, node))
