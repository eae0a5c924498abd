"""A link's status: its state, and the retained :class:`LinkStatus` on both brokers.

Published on every state change at once; counters (queue, forwarded) at most every
:data:`STATUS_EVERY` on the local broker, and across the WAN only while they matter
(:func:`_far_needs`; docs/mesh.md, "Status").
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from typing import Any

import aiomqtt

from fogmesh.broker.diskqueue import DiskQueue
from fogmesh.broker.link_core import NET_ERRORS, LinkCore, Side
from fogmesh.protocol import LinkState, LinkStatus

__all__ = [
    "FAR_COUNTERS_EVERY",
    "FAR_WAITING_EVERY",
    "STATUS_EVERY",
    "WAITING_AFTER",
    "LinkStatusReport",
    "QueueWait",
]

STATUS_EVERY = 5.0  # seconds: counters (queue depth, forwarded) are published at most this often
FAR_COUNTERS_EVERY = 300.0  # seconds: the far copy's counters while nothing waits or changes
WAITING_AFTER = 5.0  # seconds a queued message must wait before the far side hears of it
FAR_WAITING_EVERY = 60.0  # seconds: the far copy's counters while messages wait
_STATE_FIELDS = ("state", "last_error", "path", "since")  # what the far side judges a site by
_WIRE_FIELDS = {
    "wire_bytes_out",
    "wire_bytes_in",
    "local_wire_bytes_out",
    "local_wire_bytes_in",
    "path_wire_bytes_out",
    "path_wire_bytes_in",
}


def _far_needs(snap: dict[str, Any], far: dict[str, Any] | None, age: float) -> bool:
    """Whether the far copy of the status, ``far`` (``age`` seconds old), needs ``snap``.

    Both are a status's fields without the wire counts, and ``waiting``: whether a message
    has waited :data:`WAITING_AFTER` or more in either queue (:class:`QueueWait`).
    """
    if far is None or any(snap[k] != far[k] for k in _STATE_FIELDS):
        return True
    if snap["backlog"] or far["backlog"]:
        return True  # a drain, watched by an operator: every tick, and its end
    if snap["waiting"]:
        return not far["waiting"] or age >= FAR_WAITING_EVERY
    if far["waiting"] or (far["queue_depth"] and not snap["queue_depth"]):
        return True  # the far copy says messages wait that no longer do: once
    if age >= FAR_COUNTERS_EVERY:
        # for up to FAR_WAITING_EVERY more, for a tick with no message in flight: a copy
        # that caught one would need putting right at the next tick
        return not snap["queue_depth"] or age >= FAR_COUNTERS_EVERY + FAR_WAITING_EVERY
    return False


class QueueWait:
    """Whether a queue holds a message that has waited :data:`WAITING_AFTER` or more.

    Judged from what the status loop saw at its ticks: a message is known to have waited
    since the earliest tick at which the queue's newest message was at least as new. A steady
    stream keeps a message or two in flight at many ticks, each crossing well before the
    next one: that is not waiting.
    """

    def __init__(self) -> None:
        self._marks: collections.deque[tuple[float, int]] = collections.deque()
        """(when, the queue's newest seq then), oldest first."""

    def waits(self, queue: DiskQueue, now: float) -> bool:
        """Look at ``queue`` at ``now`` (monotonic; one call per tick)."""
        if not len(queue):
            self._marks.clear()
            return False
        head = queue.peek(1)[0].seq
        marks = self._marks
        while marks and marks[0][1] < head:
            marks.popleft()  # everything queued by then has crossed
        while len(marks) > 1 and marks[1][0] <= now - WAITING_AFTER:
            marks.popleft()  # the next mark proves as much
        waited = bool(marks) and marks[0][0] <= now - WAITING_AFTER
        marks.append((now, queue.last_seq()))
        return waited


class LinkStatusReport(LinkCore):
    """The status of a :class:`LinkCore`, and the loop that publishes it."""

    def status(self, state: LinkState | None = None) -> LinkStatus:
        """The link's status as the contract's :class:`LinkStatus` (``state`` overrides it)."""
        return LinkStatus(
            broker=self.broker,
            link=self.spec.name,
            state=state or self.state,
            since=self.since if state is None else None,
            queue_depth=len(self.queue["local"]) + len(self.queue["remote"]),
            queued_to_remote=len(self.queue["local"]),
            queued_to_local=len(self.queue["remote"]),
            backlog=sum(d.left for d in self.drains.values() if d is not None and d.active),
            coalesced=self.coalesced,
            dropped=self.queue["local"].dropped + self.queue["remote"].dropped,
            forwarded=self.forwarded,
            ignored=self.ignored,
            last_error=self.last_error[:1024],
            path=self.path.name if self.path is not None else "",
            path_bytes=dict(self.book.bytes),
            source=self._client_id("local"),
            wire_bytes_out=self.wire["remote"].sent,
            wire_bytes_in=self.wire["remote"].received,
            local_wire_bytes_out=self.wire["local"].sent,
            local_wire_bytes_in=self.wire["local"].received,
            path_wire_bytes_out={name: w.sent for name, w in self.path_wire.items()},
            path_wire_bytes_in={name: w.received for name, w in self.path_wire.items()},
        )

    async def _publish_status(
        self, status: LinkStatus, sides: tuple[Side, ...] = ("local", "remote")
    ) -> None:
        """Publish ``status``, retained, on ``sides`` (whichever is connected), side by side.

        Each side gets at most :data:`STATUS_EVERY` seconds: a far side that a silent partition
        has not yet been noticed on must not hold up the local ``down`` that follows.
        """
        payload = status.model_dump_json().encode()
        clients = {side: self._clients[side] for side in sides}

        async def publish(side: Side, client: aiomqtt.Client) -> None:
            self.echo[side].remember(self.status_topic, payload)
            with contextlib.suppress(*NET_ERRORS):
                async with asyncio.timeout(STATUS_EVERY):
                    await client.publish(self.status_topic, payload, qos=1, retain=True)

        await asyncio.gather(*(publish(side, c) for side, c in clients.items() if c is not None))

    async def _status_loop(self) -> None:
        """Publish on every state change at once; counters (queue, forwarded) every 5 s at most.

        The far broker gets it on a state change (state, path, error), when a side connects,
        every tick while a backlog drains (and once when that ends), while a message has
        waited :data:`WAITING_AFTER` in a queue (at once, then at most every
        :data:`FAR_WAITING_EVERY`, and once when that ends), and otherwise at most every
        :data:`FAR_COUNTERS_EVERY`: the one or two messages a steady stream has in flight at
        a tick are not news there. The wire byte counts alone (a keepalive ping, the status
        publish itself) go to the local broker only; so the local copy also learns, at the
        next tick, the bytes of the far publish it went out beside. The local copy is always
        current.
        """
        last = None
        far: dict[str, Any] | None = None
        far_at = 0.0
        told_wan: tuple[int, int] | None = None  # the wire counts the local copy has
        waits: dict[Side, QueueWait] = {"local": QueueWait(), "remote": QueueWait()}
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(STATUS_EVERY):
                    await self._status_changed.wait()
            self._status_changed.clear()
            now = time.monotonic()
            status = self.status()
            snap = status.model_dump(exclude={"id", "ts", *_WIRE_FIELDS})
            waiting = [w.waits(self.queue[side], now) for side, w in waits.items()]
            snap["waiting"] = any(waiting)
            wan = status.wire_bytes_out, status.wire_bytes_in
            if snap != last or self._status_due:
                due, self._status_due = self._status_due, False
                if due or _far_needs(snap, far, now - far_at):
                    await self._publish_status(status)
                    far, far_at = snap, now
                else:
                    await self._publish_status(status, ("local",))
                last = snap
                self.book.save()
            elif wan != told_wan:
                await self._publish_status(status, ("local",))
            else:
                continue
            told_wan = wan
