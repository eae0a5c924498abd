"""One bridge link: two aiomqtt clients, two disk queues, and the loops that move messages.

Each side (local, remote) runs a loop that connects with back-off and, while connected, runs a
reader (subscribe the rules' source filters, write every arrival to the disk queue, and only then
acknowledge it) and a writer (publish the other side's queue in order, delete a batch once the
broker acknowledged all of it). Both clients use persistent sessions with stable client ids, so
whatever was not acknowledged when a link or process died is redelivered by the broker.

The remote side may have several paths (:mod:`fogmesh.broker.paths`): it runs over the most
preferred one that answers, and on a less preferred one only the rules allowed there cross
(what else waits in the disk queue, or in the far broker's session for the preferred path).
A fallback path uses a clean session of its own (client id ``...-r-{path}``), subscribed to the
allowed rules only; the preferred path's persistent session keeps collecting everything, and
what the fallback already brought in is remembered and dropped once when that session hands it
over too.
"""

from __future__ import annotations

import asyncio
import logging

import aiomqtt
from paho.mqtt.client import MQTTMessage
from paho.mqtt.subscribeoptions import SubscribeOptions

from fogmesh.broker.link_client import RECEIVE_MAXIMUM, LinkClients
from fogmesh.broker.link_core import DISK_ERRORS, NET_ERRORS, OTHER, PUBLISH_TIMEOUT, Side
from fogmesh.broker.link_status import FAR_COUNTERS_EVERY, _far_needs
from fogmesh.broker.link_writer import LinkWriter
from fogmesh.broker.paths import LinkPath, PathSpent, PreferredBack, probe
from fogmesh.bus import backoff_delay

# the names tests and the runner import from here, as before the link was split by role
__all__ = ["FAR_COUNTERS_EVERY", "RECEIVE_MAXIMUM", "Link", "Side", "_far_needs"]

log = logging.getLogger(__name__)


class Link(LinkClients, LinkWriter):
    """A running bridge link between the local broker and a remote one.

    The state and its helpers are :class:`~fogmesh.broker.link_core.LinkCore`'s, the status
    :class:`~fogmesh.broker.link_status.LinkStatusReport`'s, the clients
    :class:`~fogmesh.broker.link_client.LinkClients`', the writer
    :class:`~fogmesh.broker.link_writer.LinkWriter`'s; here: each side's connection loop, the
    paths watch, the reader, and the link's lifetime.
    """

    # ---- connections --------------------------------------------------------------------

    async def _side_loop(self, side: Side) -> None:
        """Keep ``side`` connected; run its reader and writer while it is."""
        attempt = 0
        start = 0  # the path to try first (the remote side)
        disk_failures = 0  # in a row: the back-off grows while the disk queue keeps failing
        while True:
            connected = await self._connect(side, start)
            if side == "remote" and self._switching:
                self._switching = False
                self._refresh_state()
            if connected is None:
                start = 0
                await asyncio.sleep(
                    backoff_delay(attempt, base=self.spec.backoff_base, cap=self.spec.backoff_cap)
                )
                attempt += 1
                continue
            attempt = 0
            client, path = connected
            left = self._side_up(side, client, path)
            switching = disk_failed = False
            try:
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(
                        self._reader(side, client, path), name=f"{self.spec.name}-{side}-read"
                    )
                    tg.create_task(
                        self._writer(side, client, path), name=f"{self.spec.name}-{side}-write"
                    )
                    self._watch_paths(tg, path, left)
            except* (PreferredBack, PathSpent) as group:
                log.info("link %s: leaving path %s: %s", self.spec.name, path and path.name,
                         group.exceptions[0])  # fmt: skip
                switching, start = True, 0
                self._switching = side == "remote"
            except* DISK_ERRORS as group:
                # nothing of what failed was acknowledged: the broker delivers it again
                self._note_error(side, group.exceptions[0], path)
                disk_failed = True
            except* NET_ERRORS as group:
                self._note_error(side, group.exceptions[0], path)
                # a path that just failed is tried last next time; the watch brings it back
                start = path.index + 1 if path is not None else 0
            finally:
                self.connected[side] = False
                if side == "remote":
                    self.path = None
                self._refresh_state()
                await self._close(side, client, say_down=not switching)
            disk_failures = disk_failures + 1 if disk_failed else 0
            if not switching:
                await asyncio.sleep(
                    backoff_delay(
                        disk_failures, base=self.spec.backoff_base, cap=self.spec.backoff_cap
                    )
                )

    def _side_up(
        self, side: Side, client: aiomqtt.Client, path: LinkPath | None
    ) -> LinkPath | None:
        """Record ``side`` as connected over ``path``; the path the remote side ran on before
        this connection (None on the local side)."""
        self._clients[side] = client
        self.connected[side] = True
        left = None
        if side == "remote":
            self.path = path
            left, self._last_path = self._last_path, path
        self._refresh_state()
        where = f" over path {path.name}" if path is not None and len(self.paths) > 1 else ""
        log.info("link %s: %s side up%s", self.spec.name, side, where)
        # this broker learns the state at once, not at the next change
        self._status_due = True
        self._status_changed.set()
        return left

    def _watch_paths(
        self, tg: asyncio.TaskGroup, path: LinkPath | None, left: LinkPath | None
    ) -> None:
        """On a link with paths: watch for a better one, and restate after leaving ``left``."""
        if path is None or len(self.paths) < 2:
            return
        tg.create_task(self._watch(path), name=f"{self.spec.name}-paths")
        if left is not None and left is not path:
            tg.create_task(self._restate_after_will(left), name=f"{self.spec.name}-restate")

    async def _restate_after_will(self, left: LinkPath) -> None:
        """Publish the status again once the far broker has fired the will of the path the link
        left (it notices a silent cut only after 1.5 keepalives): the retained status there
        would otherwise say ``down`` while the link runs on this path."""
        await asyncio.sleep(2.0 * (left.spec.keepalive or self.spec.keepalive))
        self._status_due = True
        self._status_changed.set()

    async def _watch(self, path: LinkPath) -> None:
        """While on ``path``: leave it when its budget is spent, or when a preferred path
        answers a probe (tried every ``probe_every`` seconds)."""
        ident = self._client_id("remote") + "-probe"
        while True:
            await asyncio.sleep(self.spec.probe_every)
            if self.book.spent(path):
                raise PathSpent(f"path {path.name}: monthly budget spent")
            for better in self.paths[: path.index]:
                if not self.book.spent(better) and await probe(
                    better, ident, *self._counters("remote", better)
                ):
                    raise PreferredBack(better.name)

    # ---- message flow -------------------------------------------------------------------

    async def _reader(self, side: Side, client: aiomqtt.Client, path: LinkPath | None) -> None:
        """Subscribe; arrivals are committed and acknowledged as they are read (:meth:`_take`,
        :class:`~fogmesh.broker.link_reader.PassReader`) until the connection ends."""
        await self._subscribe(side, client, path)
        await self._readers[client].run(client)

    async def _subscribe(self, side: Side, client: aiomqtt.Client, path: LinkPath | None) -> None:
        """Subscribe the rules' source filters of ``side``; on a kept session (the preferred
        one) drop those it holds from earlier rules that no rule names any more."""
        filters = {
            r.source_filter: r.qos
            for r in self.routes
            if r.source == side and (path is None or r.uses(path.name))
        }
        kept = path is None or path.index == 0
        held = self.filters.recorded(side) if kept and self.session_present[side] else set()
        if kept:
            # recorded before the broker has them: a crash now still leaves them named
            self.filters.record(side, held | set(filters))
        for flt, qos in filters.items():
            if self._mqtt5(side):
                # retained messages only for a new subscription (retainHandling 1): those of a
                # kept session were seen, and may be older than what the other side has now
                opts = SubscribeOptions(
                    qos=qos, noLocal=True, retainAsPublished=True, retainHandling=1
                )
                await client.subscribe(flt, options=opts, timeout=PUBLISH_TIMEOUT)
            else:
                await client.subscribe(flt, qos=qos, timeout=PUBLISH_TIMEOUT)
        stale = sorted(held - set(filters))
        for flt in stale:
            # what the session had already queued under it may still arrive once (no route:
            # counted in ``ignored`` and acknowledged); nothing new follows it
            await client.unsubscribe(flt, timeout=PUBLISH_TIMEOUT)
        if stale:
            log.info("link %s: %s side dropped %d filter(s) no rule names: %s",
                     self.spec.name, side, len(stale), ", ".join(stale))  # fmt: skip
        if kept:
            self.filters.record(side, set(filters))

    def _take(self, side: Side, burst: list[MQTTMessage], path: LinkPath | None) -> None:
        """Queue arrivals for the other side, except echoes and what matches no rule (and,
        over the preferred path, what a fallback path already brought in)."""
        rows: list[tuple[str, bytes, int, bool]] = []
        carried = 0
        for message in burst:
            try:
                topic = message.topic
            except UnicodeDecodeError:  # not a topic any rule can name
                self.ignored += 1
                continue
            payload = bytes(message.payload)  # paho hands bytes: no copy
            if self.echo[side].is_echo(topic, payload):
                continue
            if path is not None and len(self.paths) > 1:
                carried += len(topic.encode()) + len(payload)
                if path.index > 0:
                    self.fallback_seen.remember(topic, payload)
                elif self.fallback_seen.is_echo(topic, payload):
                    continue
            found = self._route(side, topic)
            if found is None:
                self.ignored += 1
                continue
            route, dest = found
            rows.append((dest, payload, min(route.qos, 2), bool(message.retain)))
        if carried and path is not None:
            self.book.add(path.name, carried)
        if rows:
            self.queue[side].put_many(rows)
            self._wake[OTHER[side]].set()

    # ---- lifetime -----------------------------------------------------------------------

    async def run(self) -> None:
        """Run until cancelled; on cancel every loop is cancelled and awaited, queues closed."""
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._side_loop("local"), name=f"{self.spec.name}-local")
                tg.create_task(self._side_loop("remote"), name=f"{self.spec.name}-remote")
                tg.create_task(self._status_loop(), name=f"{self.spec.name}-status")
        finally:
            for q in self.queue.values():
                q.close()
