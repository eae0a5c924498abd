"""A link's status: its state, and the retained :class:`LinkStatus` on both brokers.

Published on every state change at once; counters (queue, forwarded) at most every
:data:`STATUS_EVERY` on the local broker, and across the WAN only while they matter
(:func:`_far_needs`; docs/mesh.md, "Status").
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import aiomqtt

from fogmesh.broker.link_core import NET_ERRORS, LinkCore, Side
from fogmesh.protocol import LinkState, LinkStatus

__all__ = ["FAR_COUNTERS_EVERY", "STATUS_EVERY", "LinkStatusReport"]

STATUS_EVERY = 5.0  # seconds: counters (queue depth, forwarded) are published at most this often
FAR_COUNTERS_EVERY = 300.0  # seconds: the far copy's counters while nothing waits or changes
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
    """Whether the far copy of the status, ``far`` (``age`` seconds old), needs ``snap``."""
    if far is None or age >= FAR_COUNTERS_EVERY:
        return True
    if any(snap[k] != far[k] for k in _STATE_FIELDS):
        return True

    def busy(s: dict[str, Any]) -> bool:
        return bool(s["queue_depth"] or s["backlog"])

    return busy(snap) or busy(far)


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

    async def _publish_status(self, sides: tuple[Side, ...] = ("local", "remote")) -> None:
        """Publish the status, retained, on ``sides`` (whichever is connected), side by side.

        Each side gets at most :data:`STATUS_EVERY` seconds: a far side that a silent partition
        has not yet been noticed on must not hold up the local ``down`` that follows.
        """
        payload = self.status().model_dump_json().encode()
        clients = {side: self._clients[side] for side in sides}

        async def publish(side: Side, client: aiomqtt.Client) -> None:
            self.echo[side].remember(self.status_topic, payload)
            with contextlib.suppress(*NET_ERRORS):
                async with asyncio.timeout(STATUS_EVERY):
                    await client.publish(self.status_topic, payload, qos=1, retain=True)

        await asyncio.gather(*(publish(side, c) for side, c in clients.items() if c is not None))

    async def _status_loop(self) -> None:
        """Publish on every state change at once; counters (queue, forwarded) every 5 s at most.

        The far broker gets it on a state change (state, path, error), while messages wait or a
        backlog drains (and once more when that ends), when a side connects, and otherwise at
        most every :data:`FAR_COUNTERS_EVERY`: a status across the WAN after each forwarded
        heartbeat was most of an idle site's WAN bytes. The wire byte counts alone (a keepalive
        ping, the status publish itself) go to the local broker only. The local copy is always
        current.
        """
        last = None
        far: dict[str, Any] | None = None
        far_at = 0.0
        last_wan = self._wan_bytes()
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(STATUS_EVERY):
                    await self._status_changed.wait()
            self._status_changed.clear()
            snap = self.status().model_dump(exclude={"id", "ts", *_WIRE_FIELDS})
            if snap != last or self._status_due:
                due, self._status_due = self._status_due, False
                if due or _far_needs(snap, far, time.monotonic() - far_at):
                    await self._publish_status()
                    far, far_at = snap, time.monotonic()
                else:
                    await self._publish_status(("local",))
                last = snap
                self.book.save()
            elif self._wan_bytes() != last_wan:
                await self._publish_status(("local",))
            else:
                continue
            last_wan = self._wan_bytes()

    def _wan_bytes(self) -> tuple[int, int]:
        return self.wire["remote"].sent, self.wire["remote"].received
