"""A link's writer: publish the other side's queue to one side, in order.

Up to :data:`WINDOW` batches of :data:`~fogmesh.broker.link_core.BATCH` in flight, each deleted
from the disk queue once the broker acknowledged all of it; a backlog found at connect drains
at the link's ``drain.rate`` (:mod:`fogmesh.broker.drain`); on a path some rules may not use,
only the allowed messages cross (docs/mesh.md, "Links: delivery").
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time

import aiomqtt

from fogmesh.broker.diskqueue import DiskQueue, QueuedMessage
from fogmesh.broker.drain import Drain
from fogmesh.broker.link_core import BATCH, OTHER, PUBLISH_TIMEOUT, LinkCore, Side
from fogmesh.broker.paths import LinkPath, PathSpent
from fogmesh.broker.topicmatch import matches
from fogmesh.broker.wire import Sent

__all__ = ["WINDOW", "LinkWriter"]

log = logging.getLogger("fogmesh.broker.link")
WINDOW = 4  # batches a writer has in flight before it waits for the oldest one's PUBACKs


class Ticker:
    """Set ``wake`` every ``every`` seconds until stopped (one timer, re-armed as it fires)."""

    def __init__(self, wake: asyncio.Event, every: float) -> None:
        """Start ticking."""
        self._wake, self._every = wake, every
        self._loop = asyncio.get_running_loop()
        self._handle = self._loop.call_later(every, self._fire)

    def _fire(self) -> None:
        self._wake.set()
        self._handle = self._loop.call_later(self._every, self._fire)

    def stop(self) -> None:
        """Stop ticking."""
        self._handle.cancel()


class LinkWriter(LinkCore):
    """The writer loops of a :class:`LinkCore`'s two sides."""

    async def _writer(self, side: Side, client: aiomqtt.Client, path: LinkPath | None) -> None:
        """Publish what arrived on the other side to ``side``, in order (a backlog found at
        connect drains at the link's ``drain.rate``: :mod:`fogmesh.broker.drain`)."""
        queue = self.queue[OTHER[side]]
        if side == "remote" and path is not None and self._restricted(path):
            await self._writer_on(client, path)
            return
        drain = Drain(queue, self.spec.drain, batch=BATCH)
        if drain.active:
            self.drains[side] = drain
            log.info("link %s: draining %d to %s at %s/s", self.spec.name, drain.left, side,
                     self.spec.drain.rate)  # fmt: skip
            self._status_changed.set()
            try:
                await self._drain(side, client, drain)
            finally:
                self.drains[side] = None
            log.info("link %s: backlog to %s crossed: %d sent, %d coalesced in %.1fs",
                     self.spec.name, side, drain.sent, drain.coalesced,
                     (drain.finished or drain.clock()) - drain.started)  # fmt: skip
            self._status_changed.set()
        await self._pipeline(side, client)

    async def _pipeline(self, side: Side, client: aiomqtt.Client) -> None:
        """Keep up to :data:`WINDOW` full batches in flight; delete each batch, oldest first,
        once the broker acknowledged all of it (a batch still in flight when the connection
        dies is sent again on the next one)."""
        queue = self.queue[OTHER[side]]
        wake = self._wake[side]
        window: collections.deque[tuple[list[QueuedMessage], Sent, int]] = collections.deque()
        # woken at least once a second (to see a PUBACK overdue) by one timer for the whole
        # pipeline, not a deadline armed and cancelled around every wait
        tick = Ticker(wake, 1.0)
        try:
            await self._pipe(side, client, queue, wake, window)
        finally:
            tick.stop()

    async def _pipe(
        self,
        side: Side,
        client: aiomqtt.Client,
        queue: DiskQueue,
        wake: asyncio.Event,
        window: collections.deque[tuple[list[QueuedMessage], Sent, int]],
    ) -> None:
        after = 0  # the newest seq handed over
        flying = 0  # messages in the window
        while True:
            while window and window[0][1].done:
                batch, _, size = window.popleft()
                queue.remove_through(batch[-1].seq)
                flying -= len(batch)
                self._crossed(batch, size)
            # a part batch goes only when nothing is in flight: what arrives meanwhile waits
            # for those PUBACKs and crosses with the next, a backlog crosses in full batches
            ready = len(queue) - flying
            if (
                len(window) < WINDOW
                and (ready >= BATCH or (not window and ready > 0))
                and (batch := queue.peek_range(BATCH, after=after))
            ):
                sent, size = await self._hand_over(side, client, batch)
                window.append((batch, sent, size))
                flying += len(batch)
                after = batch[-1].seq
                continue
            if window and window[0][1].at + PUBLISH_TIMEOUT <= time.monotonic():
                raise TimeoutError(f"{side}: no PUBACK within {PUBLISH_TIMEOUT:.0f} s")
            wake.clear()  # paho's callbacks run only while this waits: nothing is missed
            await wake.wait()

    def _restricted(self, path: LinkPath) -> bool:
        """Whether some outgoing rule may not use ``path``."""
        return any(not r.uses(path.name) for r in self.routes if r.source == "local")

    def _carries(self, path: LinkPath, topic: str) -> bool:
        """Whether the queued outgoing ``topic`` (remote naming) may cross on ``path``."""
        for route in self.routes:
            if route.source == "local" and matches(topic, route.dest_filter):
                return route.uses(path.name)
        return False

    async def _writer_on(self, client: aiomqtt.Client, path: LinkPath) -> None:
        """The remote writer on a path some rules may not use: their messages stay queued
        (for a better path) while the allowed ones cross, in queue order among themselves."""
        queue = self.queue["local"]
        wake = self._wake["remote"]
        after = 0  # everything up to here was looked at; what stayed is not for this path
        while True:
            page = queue.peek_range(BATCH, after=after)
            if not page:
                wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1.0):
                        await wake.wait()
                continue
            if keep := [m for m in page if self._carries(path, m.topic)]:
                await self._send("remote", client, keep)
                queue.remove_seqs([m.seq for m in keep])
            after = page[-1].seq

    async def _drain(self, side: Side, client: aiomqtt.Client, drain: Drain) -> None:
        """Live messages at once, the backlog at the bucket's pace, until the backlog is done."""
        wake = self._wake[side]
        while drain.active:
            if live := drain.live():
                await self._send(side, client, live)
                drain.live_crossed(live)
            if allowed := drain.allowance():
                keep, looked_at = drain.take(allowed)
                if looked_at:
                    if keep:
                        await self._send(side, client, keep)
                    self.coalesced += drain.backlog_crossed(keep, looked_at)
                continue
            if not live:
                wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(1.0, drain.wait_s())):
                        await wake.wait()

    async def _send(self, side: Side, client: aiomqtt.Client, batch: list[QueuedMessage]) -> None:
        """Publish ``batch`` to ``side`` in order; return once the broker acknowledged all."""
        sent, size = await self._hand_over(side, client, batch)
        wake = self._wake[side]
        async with asyncio.timeout(PUBLISH_TIMEOUT):
            while not sent.done:
                wake.clear()  # the callers look at their queue again after this returns
                await wake.wait()
        self._crossed(batch, size)

    async def _hand_over(
        self, side: Side, client: aiomqtt.Client, batch: list[QueuedMessage]
    ) -> tuple[Sent, int]:
        """Hand ``batch`` to paho in order (after the path's budget and rate allow it);
        returns the batch's acknowledgement count and its size in path bytes."""
        path = self.path if side == "remote" and len(self.paths) > 1 else None
        size = 0
        if path is not None:
            if self.book.spent(path):
                raise PathSpent(f"path {path.name}: monthly budget spent")
            size = sum(len(m.topic.encode()) + len(m.payload) for m in batch)
            if path.bucket is not None:
                await path.bucket.take(size)
        for msg in batch:
            if self._route(side, msg.topic) is not None:  # only then can it come back
                self.echo[side].remember(msg.topic, msg.payload)
        rows = [(m.topic, m.payload, m.qos, m.retain) for m in batch]
        return self._publishers[client].publish(rows, time.monotonic()), size

    def _crossed(self, batch: list[QueuedMessage], size: int) -> None:
        """``batch`` reached the far broker: count it (and its bytes on the path in use)."""
        self.forwarded += len(batch)  # reported by the status loop's next 5 s tick
        path = self.path if len(self.paths) > 1 else None
        if path is not None and size:
            self.book.add(path.name, size)
