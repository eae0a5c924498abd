"""One bridge link: two aiomqtt clients, two disk queues, and the loops that move messages.

Each side (local, remote) runs a loop that connects with back-off and, while connected, runs a
reader (subscribe the rules' source filters, write every arrival to the disk queue, and only then
acknowledge it) and a writer (publish the other side's queue in order, delete a batch once the
broker acknowledged all of it). Both clients use persistent sessions with stable client ids, so
whatever was not acknowledged when a link or process died is redelivered by the broker.
"""

from __future__ import annotations

import asyncio
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

from fogmesh.broker.config import LinkSpec, ResolvedEndpoint
from fogmesh.broker.diskqueue import DiskQueue, QueuedMessage
from fogmesh.broker.drain import Drain
from fogmesh.broker.echo import EchoMemory
from fogmesh.broker.rules import Route, routes_from
from fogmesh.broker.server import BRIDGE_PREFIX
from fogmesh.bus import backoff_delay
from fogmesh.protocol import LinkState, LinkStatus, topics

__all__ = ["Link"]

log = logging.getLogger(__name__)
Side = Literal["local", "remote"]
_OTHER: dict[Side, Side] = {"local": "remote", "remote": "local"}
CONNECT_TIMEOUT = 15.0
PUBLISH_TIMEOUT = 30.0
SESSION_EXPIRY = 7 * 24 * 3600  # an MQTT 5 session (Mosquitto end) lives this long offline
STATUS_EVERY = 5.0  # seconds: counters (queue depth, forwarded) are published at most this often
BATCH = 200  # messages in flight per writer; order still holds (one socket, sent in order)
_NET_ERRORS = (MqttError, TimeoutError, OSError)


class Link:
    """A running bridge link between the local broker and a remote one."""

    def __init__(
        self, broker: str, spec: LinkSpec, ends: dict[Side, ResolvedEndpoint], data_dir: Path
    ) -> None:
        """Prepare the link; nothing connects until :meth:`run`."""
        self.broker = broker
        self.spec = spec
        self.ends = ends
        self.routes = routes_from(spec.rules)
        qdir = data_dir / "links" / spec.name
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

    # ---- status -------------------------------------------------------------------------

    def _refresh_state(self) -> None:
        """Recompute the state after a connection came or went; wake the status loop on change.

        ``up`` needs both sides connected; a link that was up, or whose attempts fail, is
        ``down`` (also while it retries); ``connecting`` only before its first success or error.
        """
        if self.connected["local"] and self.connected["remote"]:
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
            source=self._client_id("local"),
        )

    async def _publish_status(self) -> None:
        """Publish the status, retained, on both brokers (whichever is connected), side by side.

        Each side gets at most :data:`STATUS_EVERY` seconds: a far side that a silent partition
        has not yet been noticed on must not hold up the local ``down`` that follows.
        """
        payload = self.status().model_dump_json().encode()

        async def publish(side: Side, client: aiomqtt.Client) -> None:
            self.echo[side].remember(self.status_topic, payload)
            with contextlib.suppress(*_NET_ERRORS):
                async with asyncio.timeout(STATUS_EVERY):
                    await client.publish(self.status_topic, payload, qos=1, retain=True)

        await asyncio.gather(
            *(publish(side, c) for side, c in self._clients.items() if c is not None)
        )

    async def _status_loop(self) -> None:
        """Publish on every state change at once; counters (queue, forwarded) every 5 s at most."""
        last = None
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(STATUS_EVERY):
                    await self._status_changed.wait()
            self._status_changed.clear()
            snap = self.status().model_dump(exclude={"id", "ts"})
            if snap != last or self._status_due:
                self._status_due = False
                await self._publish_status()
                last = snap

    # ---- connections --------------------------------------------------------------------

    def _client_id(self, side: Side) -> str:
        return f"{BRIDGE_PREFIX}{self.broker}-{self.spec.name}-{side[0]}"

    def _make_client(self, side: Side) -> aiomqtt.Client:
        end = self.ends[side]
        tls = None
        if end.tls is not None:
            tls = aiomqtt.TLSParameters(
                ca_certs=str(end.tls.cafile) if end.tls.cafile else None,
                certfile=str(end.tls.certfile) if end.tls.certfile else None,
                keyfile=str(end.tls.keyfile) if end.tls.keyfile else None,
            )
        # Each broker hears "down" if it loses this link's connection without a goodbye (the
        # process died, or the broker noticed a silent partition by keepalive).
        gone = self.status(LinkState.DOWN).model_copy(
            update={"last_error": f"{side} connection lost", "since": None}
        )
        will = aiomqtt.Will(self.status_topic, gone.model_dump_json(), qos=1, retain=True)
        v5: dict[str, Any] = {"clean_session": False}
        if self._mqtt5(side):
            # MQTT 5 keeps the retain flag on live deliveries (retain-as-published) and never
            # hands the link its own messages back (no-local); Mosquitto speaks it, amqtt not
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = SESSION_EXPIRY
            v5 = {"protocol": aiomqtt.ProtocolVersion.V5, "clean_start": False, "properties": props}
        client = aiomqtt.Client(
            end.host,
            end.port,
            identifier=self._client_id(side),
            **v5,
            username=end.username,
            password=end.password,
            keepalive=self.spec.keepalive,
            tls_params=tls,
            tls_insecure=bool(end.tls and end.tls.insecure) or None,
            timeout=PUBLISH_TIMEOUT,
            max_inflight_messages=BATCH,
            max_queued_outgoing_messages=0,
            will=will,
            # a hop's latency is the point: no Nagle delay on the link's sockets
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
        )
        # Acknowledge only after the message is on disk: aiomqtt 2.5 has no switch for this,
        # paho (underneath) does.
        client._client.manual_ack_set(True)
        return client

    def _mqtt5(self, side: Side) -> bool:
        return self.ends[side].kind == "mosquitto"

    async def _side_loop(self, side: Side) -> None:
        """Keep ``side`` connected; run its reader and writer while it is."""
        attempt = 0
        while True:
            client = self._make_client(side)
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT):
                    await client.__aenter__()
            except _NET_ERRORS as exc:
                self._note_error(side, exc)
                await asyncio.sleep(
                    backoff_delay(attempt, base=self.spec.backoff_base, cap=self.spec.backoff_cap)
                )
                attempt += 1
                continue
            attempt = 0
            self._clients[side] = client
            self.connected[side] = True
            self._refresh_state()
            log.info("link %s: %s side up", self.spec.name, side)
            # this broker learns the state at once, not at the next change
            self._status_due = True
            self._status_changed.set()
            try:
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(self._reader(side, client), name=f"{self.spec.name}-{side}-read")
                    tg.create_task(
                        self._writer(side, client), name=f"{self.spec.name}-{side}-write"
                    )
            except* _NET_ERRORS as group:
                self._note_error(side, group.exceptions[0])
            finally:
                self.connected[side] = False
                self._refresh_state()
                await self._close(side, client)
            await asyncio.sleep(
                backoff_delay(0, base=self.spec.backoff_base, cap=self.spec.backoff_cap)
            )

    async def _close(self, side: Side, client: aiomqtt.Client) -> None:
        # On shutdown each side says "down" itself (a clean disconnect sends no will).
        with contextlib.suppress(*_NET_ERRORS, asyncio.CancelledError):
            async with asyncio.timeout(3.0):
                down = self.status(LinkState.DOWN).model_copy(update={"since": time.time()})
                data = down.model_dump_json().encode()
                self.echo[side].remember(self.status_topic, data)
                await client.publish(self.status_topic, data, qos=1, retain=True)
                self._clients[side] = None
                await client.__aexit__(None, None, None)
        self._clients[side] = None

    def _note_error(self, side: Side, exc: BaseException) -> None:
        self.last_error = f"{side}: {type(exc).__name__}: {exc}"[:1024]
        log.warning("link %s: %s", self.spec.name, self.last_error)
        self._refresh_state()

    # ---- message flow -------------------------------------------------------------------

    def _route(self, side: Side, topic: str) -> tuple[Route, str] | None:
        for route in self.routes:
            if route.source == side and (dest := route.map(topic)) is not None:
                return route, dest
        return None

    async def _reader(self, side: Side, client: aiomqtt.Client) -> None:
        filters = {r.source_filter: r.qos for r in self.routes if r.source == side}
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
            self._take(side, burst)
            for message in burst:
                if message.qos > 0:
                    # ack only now: it is committed to the disk queue (or deliberately dropped)
                    client._client.ack(message.mid, message.qos)

    def _take(self, side: Side, burst: list[aiomqtt.Message]) -> None:
        """Queue arrivals for the other side, except echoes and what matches no rule."""
        rows: list[tuple[str, bytes, int, bool]] = []
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
            found = self._route(side, topic)
            if found is None:
                self.ignored += 1
                continue
            route, dest = found
            rows.append((dest, payload, min(route.qos, 2), bool(message.retain)))
        if rows:
            self.queue[side].put_many(rows)
            self._wake[_OTHER[side]].set()

    async def _writer(self, side: Side, client: aiomqtt.Client) -> None:
        """Publish what arrived on the other side to ``side``, in order (a backlog found at
        connect drains at the link's ``drain.rate``: :mod:`fogmesh.broker.drain`)."""
        queue = self.queue[_OTHER[side]]
        wake = self._wake[side]
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
        while True:
            batch = queue.peek(BATCH)
            if not batch:
                wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1.0):
                        await wake.wait()
                continue
            await self._send(side, client, batch)
            queue.remove_through(batch[-1].seq)

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
        for msg in batch:
            if self._route(side, msg.topic) is not None:  # only then can it come back
                self.echo[side].remember(msg.topic, msg.payload)
        async with asyncio.timeout(PUBLISH_TIMEOUT):
            # gather starts the publishes in list order, and each hands its packet to paho
            # before its first await, so the wire order is the queue order
            await asyncio.gather(
                *(client.publish(m.topic, m.payload, qos=m.qos, retain=m.retain) for m in batch)
            )
        self.forwarded += len(batch)  # reported by the status loop's next 5 s tick

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
