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
import collections
import contextlib
import logging
import socket
import time
from pathlib import Path
from typing import Any, Literal

import aiomqtt
from aiomqtt import MqttError
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from fogmesh.broker.config import LinkSpec, PathSpec, ResolvedEndpoint
from fogmesh.broker.diskqueue import DiskQueue, QueuedMessage
from fogmesh.broker.drain import Drain
from fogmesh.broker.echo import EchoMemory
from fogmesh.broker.paths import (
    LinkPath,
    PathBook,
    PathSpent,
    PreferredBack,
    probe,
    tls_parameters,
)
from fogmesh.broker.rules import Route, routes_from
from fogmesh.broker.server import BRIDGE_PREFIX
from fogmesh.broker.topicmatch import matches
from fogmesh.broker.wire import (
    Publisher,
    Sent,
    WireBytes,
    coalesce_writes,
    count_bytes,
    lean_properties,
)
from fogmesh.bus import backoff_delay, drain_reads
from fogmesh.protocol import LinkState, LinkStatus, topics

__all__ = ["Link"]

log = logging.getLogger(__name__)
Side = Literal["local", "remote"]
_OTHER: dict[Side, Side] = {"local": "remote", "remote": "local"}
CONNECT_TIMEOUT = 15.0
PUBLISH_TIMEOUT = 30.0
SESSION_EXPIRY = 7 * 24 * 3600  # an MQTT 5 session (Mosquitto end) lives this long offline
STATUS_EVERY = 5.0  # seconds: counters (queue depth, forwarded) are published at most this often
FAR_COUNTERS_EVERY = 300.0  # seconds: the far copy's counters while nothing waits or changes
BATCH = 200  # messages a writer hands over at once; order holds (one socket, sent in order)
WINDOW = 4  # batches a writer has in flight before it waits for the oldest one's PUBACKs
RECEIVE_MAXIMUM = 5 * BATCH
"""QoS 1 messages an MQTT 5 end (Mosquitto) may send the link before it waits for PUBACKs.

Mosquitto otherwise holds a client to its ``max_inflight_messages`` (default 20): each 20
messages then waited for a disk commit and a round trip. The reader commits what one socket
read brought (up to :data:`BATCH`), so a few batches' worth keeps it fed."""
_NET_ERRORS = (MqttError, TimeoutError, OSError)
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


class Link:
    """A running bridge link between the local broker and a remote one."""

    def __init__(
        self,
        broker: str,
        spec: LinkSpec,
        ends: dict[Side, ResolvedEndpoint],
        data_dir: Path,
        paths: list[tuple[PathSpec, ResolvedEndpoint]] | None = None,
    ) -> None:
        """Prepare the link; nothing connects until :meth:`run`.

        ``paths``: the remote's paths, preferred first (:meth:`MeshSpec.resolve_paths`); None
        is the one path ``default`` to ``ends["remote"]``.
        """
        self.broker = broker
        self.spec = spec
        self.ends = ends
        self.routes = routes_from(spec.rules)
        qdir = data_dir / "links" / spec.name
        found = paths or [(PathSpec(name="default"), ends["remote"])]
        self.paths = [LinkPath(i, p, end) for i, (p, end) in enumerate(found)]
        self.path: LinkPath | None = None
        """The path the remote side is connected over (None: not connected)."""
        self._switching = False  # the remote side leaves a path for a better one: still "up"
        self._last_path: LinkPath | None = None  # the remote side's path before this one
        self.book = PathBook(qdir / "paths.json")
        # what a fallback session brought in, dropped once when the preferred session replays it
        self.fallback_seen = EchoMemory(ttl=SESSION_EXPIRY, max_entries=200_000)
        # queue[side] holds what arrived on ``side`` and must go to the other side
        self.queue: dict[Side, DiskQueue] = {
            side: DiskQueue(
                qdir / f"from-{side}.sqlite",
                max_messages=spec.queue.max_messages,
                drop=spec.queue.drop,
            )
            for side in ("local", "remote")
        }
        self.echo: dict[Side, EchoMemory] = {"local": EchoMemory(), "remote": EchoMemory()}
        self.connected: dict[Side, bool] = {"local": False, "remote": False}
        self._clients: dict[Side, aiomqtt.Client | None] = {"local": None, "remote": None}
        self._publishers: dict[aiomqtt.Client, Publisher] = {}
        self._wake: dict[Side, asyncio.Event] = {
            "local": asyncio.Event(),
            "remote": asyncio.Event(),
        }
        self._status_changed = asyncio.Event()  # the state changed: publish at once
        self._status_due = False  # publish even if unchanged (a side just connected)
        self.state = LinkState.CONNECTING
        self.since = time.time()
        self._was_up = False
        self.forwarded = 0
        self.ignored = 0
        self.coalesced = 0
        self.drains: dict[Side, Drain | None] = {"local": None, "remote": None}
        """Each writer's backlog drain (docs/mesh.md: ``drain``), while one runs."""
        self.last_error = ""
        self.status_topic = topics.mesh_link(broker, spec.name)
        self.wire: dict[Side, WireBytes] = {"local": WireBytes(), "remote": WireBytes()}
        """Bytes on each side's sockets since the link started (docs/mesh.md: ``wire_bytes``)."""
        self.path_wire: dict[str, WireBytes] = (
            {p.name: WireBytes() for p in self.paths} if len(self.paths) > 1 else {}
        )

    # ---- status -------------------------------------------------------------------------

    def _refresh_state(self) -> None:
        """Recompute the state after a connection came or went; wake the status loop on change.

        ``up`` needs both sides connected; a link that was up, or whose attempts fail, is
        ``down`` (also while it retries); ``connecting`` only before its first success or error.
        """
        remote = self.connected["remote"] or self._switching
        if self.connected["local"] and remote:
            state = LinkState.UP
            self._was_up = True
        elif self._was_up or self.last_error:
            state = LinkState.DOWN
        else:
            state = LinkState.CONNECTING
        if state != self.state:
            self.state = state
            self.since = time.time()
            self._status_changed.set()

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
            with contextlib.suppress(*_NET_ERRORS):
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

    # ---- connections --------------------------------------------------------------------

    def _client_id(self, side: Side, path: LinkPath | None = None) -> str:
        base = f"{BRIDGE_PREFIX}{self.broker}-{self.spec.name}-{side[0]}"
        return base if path is None or path.index == 0 else f"{base}-{path.name}"

    def _make_client(self, side: Side, path: LinkPath | None = None) -> aiomqtt.Client:
        end = self.ends[side] if path is None else path.end
        keepalive = (path and path.spec.keepalive) or self.spec.keepalive
        tls = tls_parameters(end)
        # Each broker hears "down" if it loses this link's connection without a goodbye (the
        # process died, or the broker noticed a silent partition by keepalive).
        # The will names its own path: a will a far broker fires late for a path the link has
        # already left is told apart from the loss of the path in use (SiteLinks.update).
        gone = self.status(LinkState.DOWN).model_copy(
            update={
                "last_error": f"{side} connection lost",
                "since": None,
                "path": path.name if path is not None and len(self.paths) > 1 else "",
            }
        )
        will = aiomqtt.Will(self.status_topic, gone.model_dump_json(), qos=1, retain=True)
        # a fallback path's session is clean: the preferred path's persistent one keeps
        # collecting everything meanwhile, so nothing is lost when a fallback session goes
        kept = path is None or path.index == 0
        v5: dict[str, Any] = {"clean_session": not kept}
        if self._mqtt5(side):
            # MQTT 5 keeps the retain flag on live deliveries (retain-as-published) and never
            # hands the link its own messages back (no-local); Mosquitto speaks it, amqtt not
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = SESSION_EXPIRY if kept else 0
            props.ReceiveMaximum = RECEIVE_MAXIMUM
            lean_properties()  # paho decodes properties on every packet of an MQTT 5 end
            v5 = {
                "protocol": aiomqtt.ProtocolVersion.V5,
                "clean_start": not kept,
                "properties": props,
            }
        client = aiomqtt.Client(
            end.host,
            end.port,
            identifier=self._client_id(side, path),
            **v5,
            username=end.username,
            password=end.password,
            keepalive=keepalive,
            tls_params=tls,
            tls_insecure=bool(end.tls and end.tls.insecure) or None,
            timeout=PUBLISH_TIMEOUT,
            # no limit in paho: the writer's WINDOW bounds what is in flight, and paho scans
            # every in-flight message on each PUBACK when it has a limit to enforce
            max_inflight_messages=0,
            max_queued_outgoing_messages=0,
            will=will,
            # a hop's latency is the point: no Nagle delay on the link's sockets
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
        )
        # Acknowledge only after the message is on disk: aiomqtt 2.5 has no switch for this,
        # paho (underneath) does.
        client._client.manual_ack_set(True)
        count_bytes(client, *self._counters(side, path))
        # every whole packet a wake-up brought is handled in it: a burst reaches the reader
        # (one disk commit, one send of PUBACKs) and a batch's PUBACKs the writer together
        drain_reads(client._client)
        coalesce_writes(client)  # a burst's PUBACKs / a batch's PUBLISHes in one send()
        # a writer hears of its acknowledged batches through the same event as of new messages
        self._publishers[client] = Publisher(client, self._wake[side].set)
        return client

    def _counters(self, side: Side, path: LinkPath | None) -> list[WireBytes]:
        """The wire counters a client of ``side`` over ``path`` adds its bytes to."""
        found = [self.wire[side]]
        if side == "remote" and path is not None and path.name in self.path_wire:
            found.append(self.path_wire[path.name])
        return found

    def _mqtt5(self, side: Side) -> bool:
        return self.ends[side].kind == "mosquitto"

    async def _connect(
        self, side: Side, start: int
    ) -> tuple[aiomqtt.Client, LinkPath | None] | None:
        """Connect ``side``: the remote over the first path from ``start`` on (wrapping round)
        that answers and has budget left; None when none did."""
        if side == "local":
            candidates: list[LinkPath | None] = [None]
        else:
            order = self.paths[start:] + self.paths[:start]
            candidates = [p for p in order if not self.book.spent(p)]
            if not candidates:
                self._note_error(side, PathSpent("every path's monthly budget is spent"))
        for path in candidates:
            client = self._make_client(side, path)
            wait = CONNECT_TIMEOUT
            if path is not None and len(self.paths) > 1:
                wait = path.spec.connect_timeout  # a dead path must not hold up the next
            try:
                async with asyncio.timeout(wait):
                    await client.__aenter__()
            except _NET_ERRORS as exc:
                self._publishers.pop(client, None)
                self._note_error(side, exc, path)
                continue
            return client, path
        return None

    async def _side_loop(self, side: Side) -> None:
        """Keep ``side`` connected; run its reader and writer while it is."""
        attempt = 0
        start = 0  # the path to try first (the remote side)
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
            self._clients[side] = client
            self.connected[side] = True
            left = None  # the path the remote side ran on before this connection
            if side == "remote":
                self.path = path
                left, self._last_path = self._last_path, path
            self._refresh_state()
            where = f" over path {path.name}" if path is not None and len(self.paths) > 1 else ""
            log.info("link %s: %s side up%s", self.spec.name, side, where)
            # this broker learns the state at once, not at the next change
            self._status_due = True
            self._status_changed.set()
            switching = False
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
            except* _NET_ERRORS as group:
                self._note_error(side, group.exceptions[0], path)
                # a path that just failed is tried last next time; the watch brings it back
                start = path.index + 1 if path is not None else 0
            finally:
                self.connected[side] = False
                if side == "remote":
                    self.path = None
                self._refresh_state()
                await self._close(side, client, say_down=not switching)
            if not switching:
                await asyncio.sleep(
                    backoff_delay(0, base=self.spec.backoff_base, cap=self.spec.backoff_cap)
                )

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

    async def _close(self, side: Side, client: aiomqtt.Client, *, say_down: bool = True) -> None:
        # On shutdown each side says "down" itself (a clean disconnect sends no will); a switch
        # of paths says nothing: the next path's connection follows at once.
        with contextlib.suppress(*_NET_ERRORS, asyncio.CancelledError):
            async with asyncio.timeout(3.0):
                if say_down:
                    down = self.status(LinkState.DOWN).model_copy(update={"since": time.time()})
                    data = down.model_dump_json().encode()
                    self.echo[side].remember(self.status_topic, data)
                    await client.publish(self.status_topic, data, qos=1, retain=True)
                self._clients[side] = None
                await client.__aexit__(None, None, None)
        self._clients[side] = None
        self._publishers.pop(client, None)

    def _note_error(self, side: Side, exc: BaseException, path: LinkPath | None = None) -> None:
        over = f" (path {path.name})" if path is not None and len(self.paths) > 1 else ""
        self.last_error = f"{side}{over}: {type(exc).__name__}: {exc}"[:1024]
        log.warning("link %s: %s", self.spec.name, self.last_error)
        self._refresh_state()

    # ---- message flow -------------------------------------------------------------------

    def _route(self, side: Side, topic: str) -> tuple[Route, str] | None:
        for route in self.routes:
            if route.source == side and (dest := route.map(topic)) is not None:
                return route, dest
        return None

    async def _reader(self, side: Side, client: aiomqtt.Client, path: LinkPath | None) -> None:
        filters = {
            r.source_filter: r.qos
            for r in self.routes
            if r.source == side and (path is None or r.uses(path.name))
        }
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
        messages = client.messages
        async for first in messages:
            # everything that already arrived goes to disk in one transaction, then is acked
            burst = [first]
            while len(burst) < BATCH and len(messages) > 0:
                burst.append(await anext(messages))
            self._take(side, burst, path)
            for message in burst:
                if message.qos > 0:
                    # ack only now: it is committed to the disk queue (or deliberately dropped)
                    client._client.ack(message.mid, message.qos)

    def _take(self, side: Side, burst: list[aiomqtt.Message], path: LinkPath | None) -> None:
        """Queue arrivals for the other side, except echoes and what matches no rule (and,
        over the preferred path, what a fallback path already brought in)."""
        rows: list[tuple[str, bytes, int, bool]] = []
        carried = 0
        for message in burst:
            topic = message.topic.value
            raw = message.payload
            if isinstance(raw, bytes | bytearray):
                payload = bytes(raw)
            elif raw is None:
                payload = b""
            else:  # aiomqtt only yields bytes from the wire; anything else is not ours to carry
                self.ignored += 1
                continue
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
            self._wake[_OTHER[side]].set()

    async def _writer(self, side: Side, client: aiomqtt.Client, path: LinkPath | None) -> None:
        """Publish what arrived on the other side to ``side``, in order (a backlog found at
        connect drains at the link's ``drain.rate``: :mod:`fogmesh.broker.drain`)."""
        queue = self.queue[_OTHER[side]]
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
        queue = self.queue[_OTHER[side]]
        wake = self._wake[side]
        window: collections.deque[tuple[list[QueuedMessage], Sent, int]] = collections.deque()
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
            wake.clear()  # paho's callbacks run only while this waits: nothing is missed
            wait = 1.0
            if window:
                wait = window[0][1].at + PUBLISH_TIMEOUT - time.monotonic()
                if wait <= 0:
                    raise TimeoutError(f"{side}: no PUBACK within {PUBLISH_TIMEOUT:.0f} s")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
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
