"""The bus client every fogmesh service talks through.

One :class:`Bus` owns one MQTT connection. ``async with Bus(...)`` starts a supervisor task
that runs a :class:`asyncio.TaskGroup` of named loops: the connection loop (connect, restore
subscriptions, flush the outbox, receive; on loss reconnect after a capped, jittered back-off)
and one worker per subscription (handlers of one subscription run in order; a slow handler of
one subscription does not hold up another). Every task the bus starts belongs to that group.
Leaving the block cancels the supervisor and awaits it, which disconnects cleanly.

QoS 1 messages are acknowledged by hand (paho's ``manual_ack``): a PUBACK goes out only once
the message's handlers have returned, on the connection it came from, so a message still
queued when the service dies is delivered again to its persistent session. The PUBACKs of the
messages handled in one turn of the event loop leave in one write (one packet each, in the
order they were handled), not one system call each.

The receive path costs little per message: one socket read per wake-up serves every whole packet
it brought (:mod:`~fogmesh.bus._socket_drain`), messages already waiting are taken from
aiomqtt's queue directly, and which subscriptions a topic goes to is worked out once per topic
(:class:`~fogmesh.bus._matcher.FilterIndex`).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import socket
import struct
from collections.abc import Awaitable, Callable, Coroutine
from enum import Enum
from typing import Any, Self, TypeVar

import aiomqtt
import pydantic_core
import structlog
from pydantic import BaseModel

from fogmesh.bus._backoff import backoff_delay
from fogmesh.bus._config import BusConfig, Will
from fogmesh.bus._keepalive import early_pings
from fogmesh.bus._matcher import FilterIndex
from fogmesh.bus._outbox import OutboundMessage, Outbox
from fogmesh.bus._replies import decode_reply, payload_bytes
from fogmesh.bus._reply_rule import reply_topic_for
from fogmesh.bus._socket_drain import drain_reads
from fogmesh.bus._subscription import Delivery, Handler, Subscription
from fogmesh.protocol import (
    BusError,
    NotConnectedError,
    Reply,
    Request,
    RequestTimeout,
    check_topic,
)

__all__ = ["Bus", "Handler"]

log = structlog.get_logger("fogmesh.bus")

MAX_BACKGROUND = 1000
"""Background tasks (on-connect callbacks, late subscribes, refusals) a bus runs at most."""

RECEIVE_BURST = 256
"""Messages dispatched from aiomqtt's queue before the receive loop lets other tasks run."""
_PUBACK = struct.Struct("!BBH")  # MQTT PUBACK: type 0x40, remaining length 2, packet id
_PUBACK_TYPE = 0x40

M = TypeVar("M", bound=BaseModel)
R = TypeVar("R", bound=Reply)
T = TypeVar("T")
ConnectCallback = Callable[["Bus"], Coroutine[Any, Any, None]]


class _Lifecycle(Enum):
    UNOPENED = "unopened"
    OPENED = "opened"
    CLOSED = "closed"


class Bus:
    """A connection to the fogmesh bus: typed publish, typed subscriptions, request / reply."""

    def __init__(self, config: BusConfig, *, will: Will | None = None) -> None:
        self.config = config
        self._will = will
        self._lifecycle = _Lifecycle.UNOPENED
        self._subs: dict[str, Subscription] = {}
        self._index = FilterIndex()
        self._acks: list[int] = []
        """Packet ids handled this turn of the loop whose PUBACK is not yet written."""
        self._acks_client: aiomqtt.Client | None = None
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._outbox = Outbox(config.outbox_limit, config.outbox_policy)
        self._client: aiomqtt.Client | None = None
        self._ready = asyncio.Event()
        self._on_connect: list[ConnectCallback] = []
        self._supervisor: asyncio.Task[None] | None = None
        self._group: asyncio.TaskGroup | None = None
        self._group_ready = asyncio.Event()
        self._flushing = False
        self._background = 0
        self.reply_topic = reply_topic_for(
            "", username=config.username, client_id=config.client_id, duty=config.reply_duty
        )
        """Where replies to this client's requests outside a tenant's API arrive."""
        self._reply_topics = {self.reply_topic}
        self.connects = 0
        self._pings_sent = [0]  # early_pings' count (pings_sent)
        self._turn = 0  # which of config.endpoint() the next connection dials

    # -- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._lifecycle is not _Lifecycle.UNOPENED:
            raise BusError(f"a Bus can be opened once; this one is {self._lifecycle.value}")
        self._lifecycle = _Lifecycle.OPENED
        self._supervisor = asyncio.create_task(
            self._supervise(), name=f"fogmesh.bus[{self.config.client_id}].supervisor"
        )
        await self._group_ready.wait()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._lifecycle = _Lifecycle.CLOSED
        for future in self._pending.values():
            if not future.done():
                future.set_exception(BusError("the bus was closed before the reply came"))
        if self._supervisor is not None:
            self._supervisor.cancel()
            try:
                await self._supervisor
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise  # the caller itself is being cancelled: let that through

    @property
    def connected(self) -> bool:
        """True while connected, with subscriptions restored and the outbox flushed."""
        return self._ready.is_set()

    @property
    def dropped(self) -> int:
        """Messages the outbox dropped by its policy since this bus started."""
        return self._outbox.dropped

    @property
    def pings_sent(self) -> int:
        """PINGREQs sent at half the keepalive while idle (:mod:`~fogmesh.bus._keepalive`)."""
        return self._pings_sent[0]

    @property
    def queued(self) -> int:
        """Messages waiting in the outbox for a connection."""
        return len(self._outbox)

    async def wait_connected(self, timeout: float | None = None) -> None:
        """Wait until connected; raise :class:`TimeoutError` after ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            await self._ready.wait()

    def on_connect(self, callback: ConnectCallback) -> None:
        """Call ``callback(bus)`` after each (re)connect, once subscriptions are restored."""
        self._on_connect.append(callback)

    # -- subscriptions ---------------------------------------------------------------------

    def subscribe(
        self,
        topic_filter: str,
        model: type[M],
        handler: Handler[M],
        *,
        qos: int = 1,
        max_payload: int | None = None,
    ) -> None:
        """Deliver messages on ``topic_filter``, validated as ``model``, to ``handler``.

        Subscribing to a filter again replaces its handler; it never adds a second one.
        ``max_payload`` (bytes) overrides ``BusConfig.max_payload`` for this filter.
        """
        existing = self._subs.get(topic_filter)
        if existing is not None:
            existing.model, existing.handler, existing.qos = model, handler, qos
            existing.max_payload = max_payload
            return
        sub = Subscription(topic_filter, model, handler, qos, max_payload)
        self._subs[topic_filter] = sub
        self._index.update(self._subs)
        if self._group is not None:
            self._start_worker(sub)
        client = self._client
        if client is not None:  # also while restoring: that pass may have missed this filter
            self._spawn(self._subscribe_now(client, sub))

    def _spawn(self, work: Coroutine[Any, Any, None], name: str = "background") -> bool:
        """Run ``work`` as a task of the bus's TaskGroup (cancelled when the bus closes).

        A failure is logged, never raised into the group. False (and ``work`` is not run) when
        the bus is not running or already runs ``MAX_BACKGROUND`` such tasks.
        """
        if self._group is None or self._background >= MAX_BACKGROUND:
            work.close()
            return False
        self._background += 1
        self._group.create_task(
            self._guarded(work), name=f"fogmesh.bus[{self.config.client_id}].{name}"
        )
        return True

    async def _guarded(self, work: Coroutine[Any, Any, None]) -> None:
        try:
            await work
        except Exception:  # a background task must never take the bus down
            log.exception("background bus task failed")
        finally:
            self._background -= 1

    def publish_later(self, topic: str, message: BaseModel) -> None:
        """Publish ``message`` (QoS 1) in the background, for answers a worker must not wait
        on (a flooding tenant's refusals); dropped with a log line when too many are pending."""
        if not self._spawn(self.publish(topic, message, qos=1), name="publish_later"):
            log.warning("background publish dropped", topic=topic)

    async def _subscribe_now(self, client: aiomqtt.Client, sub: Subscription) -> None:
        with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
            await self._subscribe_granted(client, [(sub.filter, sub.qos)])

    async def _subscribe_granted(
        self, client: aiomqtt.Client, filters: list[tuple[str, int]]
    ) -> None:
        """Subscribe to ``filters``; any the broker refuses are retried in the background.

        A broker may refuse a subscription for a while (a clustered one re-electing after a
        member died answers SUBACK 0x80) or for good (an ACL): neither may leave a filter
        silently unsubscribed, nor drop a connection that serves every other filter.
        """
        granted = await _within(self.config.timeout, client.subscribe(filters, timeout=math.inf))
        refused = [f for f, code in zip(filters, granted, strict=False) if _refused(code)]
        if refused:
            log.warning("subscription refused; retrying", filters=[f for f, _ in refused])
            self._spawn(self._retry_refused(client, refused), name="resubscribe")

    async def _retry_refused(self, client: aiomqtt.Client, filters: list[tuple[str, int]]) -> None:
        attempt = 0
        while filters and client is self._client:
            await asyncio.sleep(
                backoff_delay(
                    attempt, base=self.config.reconnect_base, cap=self.config.reconnect_cap
                )
            )
            attempt += 1
            if client is not self._client:
                return  # reconnected: the restore pass subscribes afresh
            try:
                granted = await _within(
                    self.config.timeout, client.subscribe(filters, timeout=math.inf)
                )
            except (aiomqtt.MqttError, TimeoutError):
                return  # the connection is going: the restore pass takes over
            filters = [f for f, code in zip(filters, granted, strict=False) if _refused(code)]
        if not filters:
            log.info("refused subscription granted", attempts=attempt)

    def acknowledge(self, delivery: Delivery) -> None:
        """Send the PUBACK of a handled QoS 1 message, on the connection it came from.

        After a reconnect the broker sends an unacknowledged message again (the same packet id
        could name another message by then), so nothing is acknowledged across connections.
        """
        message = delivery.message
        client = delivery.client
        if message.qos < 1 or client is not self._client:
            return
        if message.qos > 1:
            # aiomqtt 2.5 neither passes ``manual_ack`` on nor wraps ``ack``: use paho's own
            client._client.ack(message.mid, message.qos)
            return
        if self._acks_client is not client:
            self._acks, self._acks_client = [], client  # any left are an old connection's
        if not self._acks:
            asyncio.get_running_loop().call_soon(self._send_acks, client)
        self._acks.append(message.mid)

    def _send_acks(self, client: aiomqtt.Client) -> None:
        """Write the PUBACKs gathered this turn as one packet write on their connection."""
        if self._acks_client is not client:
            return
        mids, self._acks = self._acks, []
        paho = client._client
        if not mids or client is not self._client or not paho.is_connected():
            return  # the connection is gone: the broker sends these messages again
        packet = b"".join(_PUBACK.pack(_PUBACK_TYPE, 2, mid) for mid in mids)
        # paho's own queue keeps the PUBACKs in order with its other packets and writes
        # them when the socket is writable (``ack`` would queue and write each on its own)
        paho._packet_queue(_PUBACK_TYPE, packet, 0, 0)

    # -- publishing ------------------------------------------------------------------------

    async def publish(
        self,
        topic: str,
        message: BaseModel,
        *,
        qos: int = 1,
        retain: bool = False,
        queue: bool = True,
    ) -> None:
        """Publish ``message`` as JSON. Returns once the broker has it (QoS 1) or it is queued.

        ``queue=False`` is for writers whose right to write may lapse while they are away (a
        lease holder): instead of waiting in the outbox, the message raises
        :class:`NotConnectedError` when it cannot be handed to the broker now.
        """
        await self.publish_raw(
            topic, message.model_dump_json().encode(), qos=qos, retain=retain, queue=queue
        )

    async def publish_raw(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False, queue: bool = True
    ) -> None:
        """Publish raw bytes (the apps' data plane); same delivery rules as :meth:`publish`."""
        check_topic(topic)
        outbound = OutboundMessage(topic, payload, qos, retain)
        client = self._client
        # Straight to the broker only when nothing waits before it, so order is kept.
        if client is not None and self._ready.is_set() and (not len(self._outbox) or not queue):
            try:
                await self._send(client, outbound)
            except (aiomqtt.MqttError, TimeoutError) as exc:
                if not queue:
                    raise NotConnectedError(f"publish failed: {exc}", topic=topic) from exc
                log.debug("publish failed; queued", topic=topic, error=str(exc))
                # never let this older copy displace a newer retained value queued meanwhile
                self._outbox.requeue(outbound)
                self._kick_flush()
            return
        if not queue:
            raise NotConnectedError("not connected; this message is not queued", topic=topic)
        self._outbox.put(outbound)
        self._kick_flush()

    def _kick_flush(self) -> None:
        """While connected, send what the outbox holds now rather than at the next reconnect."""
        if self._group is None or not self._ready.is_set() or self._flushing:
            return
        self._flushing = True
        self._group.create_task(self._flush(), name=f"fogmesh.bus[{self.config.client_id}].flush")

    async def _flush(self) -> None:
        try:
            while (client := self._client) is not None and self._ready.is_set():
                outbound = self._outbox.pop()
                if outbound is None:
                    return
                try:
                    await self._send(client, outbound)
                except (aiomqtt.MqttError, TimeoutError) as exc:
                    self._outbox.requeue(outbound)
                    log.debug("outbox flush failed; will retry", error=str(exc))
                    await asyncio.sleep(self.config.reconnect_base)
        finally:
            self._flushing = False

    async def _send(self, client: aiomqtt.Client, outbound: OutboundMessage) -> None:
        await _within(
            self.config.timeout,
            client.publish(
                outbound.topic,
                outbound.payload,
                qos=outbound.qos,
                retain=outbound.retain,
                timeout=math.inf,
            ),
        )

    # -- request / reply -------------------------------------------------------------------

    async def request(
        self, topic: str, request: Request, reply_model: type[R], *, timeout: float = 5.0
    ) -> R:
        """Send ``request`` and return its reply as ``reply_model``.

        Raises :class:`RemoteError` when the service answers with an error, and
        :class:`RequestTimeout` when no answer comes within ``timeout`` seconds.
        """
        reply_to = reply_topic_for(
            topic,
            username=self.config.username,
            client_id=self.config.client_id,
            duty=self.config.reply_duty,
        )
        await self._listen_on(reply_to, timeout)
        sent = request.model_copy(
            update={"reply_to": reply_to, "source": request.source or self.config.client_id}
        )
        correlation_id = sent.correlation_id
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[correlation_id] = future
        try:
            async with asyncio.timeout(timeout):
                await self.publish(topic, sent, qos=1)
                data = await future
        except TimeoutError as exc:
            raise RequestTimeout(
                f"no reply on {topic} within {timeout}s",
                topic=topic,
                correlation_id=correlation_id,
                timeout=timeout,
            ) from exc
        finally:
            self._pending.pop(correlation_id, None)
        return decode_reply(data, reply_model)

    async def _listen_on(self, reply_to: str, timeout: float) -> None:
        """Subscribe to a reply topic on its first use (restored on every reconnect)."""
        if reply_to in self._reply_topics:
            return
        self._reply_topics.add(reply_to)
        client = self._client
        if client is None:
            return  # the next connection subscribes it before anything is sent
        with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
            await _within(
                min(timeout, self.config.timeout),
                client.subscribe(reply_to, qos=1, timeout=math.inf),
            )

    def _resolve_reply(self, payload: bytes) -> None:
        try:
            data = pydantic_core.from_json(payload)
        except ValueError:
            log.warning("reply is not JSON", size=len(payload))
            return
        correlation_id = data.get("correlation_id") if isinstance(data, dict) else None
        future = self._pending.get(correlation_id) if isinstance(correlation_id, str) else None
        if future is None:
            log.debug("reply for no pending request", correlation_id=correlation_id)
            return
        if not future.done():
            future.set_result(data)

    # -- the loops -------------------------------------------------------------------------

    async def _supervise(self) -> None:
        name = f"fogmesh.bus[{self.config.client_id}]"
        try:
            async with asyncio.TaskGroup() as group:
                self._group = group
                for sub in self._subs.values():
                    self._start_worker(sub)
                group.create_task(self._connection_loop(), name=f"{name}.connection_loop")
                self._group_ready.set()
        finally:
            self._group = None
            self._group_ready.set()

    def _start_worker(self, sub: Subscription) -> None:
        assert self._group is not None
        sub.worker = self._group.create_task(
            sub.serve(self), name=f"fogmesh.bus[{self.config.client_id}].handle[{sub.filter}]"
        )

    async def _connection_loop(self) -> None:
        attempt = 0
        while True:
            connects_before = self.connects
            try:
                await self._connect_once()
            except aiomqtt.MqttError as exc:
                log.info(
                    "bus connection lost",
                    error=str(exc),
                    host=self.config.host,
                    port=self.config.port,
                )
            except TimeoutError:
                log.info("bus connect timed out", host=self.config.host, port=self.config.port)
            if self.connects > connects_before:
                attempt = 0  # it was up: the next outage starts the back-off afresh
            self._turn += 1  # a clustered broker: the next member (a no-op with one address)
            delay = backoff_delay(
                attempt, base=self.config.reconnect_base, cap=self.config.reconnect_cap
            )
            attempt += 1
            await asyncio.sleep(delay)

    def _make_client(self) -> aiomqtt.Client:
        cfg = self.config
        will = None
        if self._will is not None:
            will = aiomqtt.Will(
                self._will.topic,
                self._will.message.model_dump_json().encode(),
                qos=self._will.qos,
                retain=self._will.retain,
            )
        host, port = cfg.endpoint(self._turn)
        client = aiomqtt.Client(
            host,
            port,
            username=cfg.username,
            password=cfg.password,
            identifier=cfg.client_id,
            clean_session=cfg.clean_session,
            keepalive=cfg.keepalive,
            will=will,
            timeout=cfg.timeout,
            tls_context=cfg.tls,
            transport="websockets" if cfg.transport == "websockets" else "tcp",
            websocket_path=cfg.websocket_path,
            # Request / reply is latency-bound: Nagle plus delayed ACKs costs ~40 ms a hop.
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
        )
        # PUBACK after handling (see acknowledge); aiomqtt 2.5 does not take manual_ack itself
        client._client.manual_ack_set(True)
        drain_reads(client._client)  # every whole packet of a wake-up, one recv
        return client

    async def _connect_once(self) -> None:
        client = self._make_client()
        watchdog: asyncio.TimerHandle | None = None
        try:
            async with client:
                self._client = client
                try:
                    await self._serve_connection(client)
                finally:
                    self._ready.clear()
                    self._client = None
                    watchdog = self._bound_disconnect(client)
        finally:
            if watchdog is not None:
                watchdog.cancel()

    def _bound_disconnect(self, client: aiomqtt.Client) -> asyncio.TimerHandle:
        """Give leaving ``client`` at most half of ``config.timeout`` seconds.

        aiomqtt's exit waits without a deadline until its DISCONNECT is written, and a broker
        that has stopped reading this connection (its socket buffer full) would hold the bus,
        and whoever closes it, forever. Past the deadline the socket is closed and the wait ends.
        """

        def force() -> None:
            disconnected: asyncio.Future[None] = client._disconnected
            if disconnected.done():
                return
            log.warning(
                "broker did not take the disconnect; closing the connection",
                host=self.config.host,
                port=self.config.port,
            )
            with contextlib.suppress(Exception):
                client._client._sock_close()
            disconnected.set_result(None)

        # before aiomqtt's own wait gives up (at config.timeout, raising MqttError in place of
        # the cancellation that is closing the bus)
        return asyncio.get_running_loop().call_later(self.config.timeout / 2, force)

    async def _serve_connection(self, client: aiomqtt.Client) -> None:
        """Restore, announce and receive on one live connection."""
        await self._restore(client)
        self.connects += 1
        self._ready.set()
        log.debug(
            "bus connected",
            host=self.config.host,
            port=self.config.port,
            connects=self.connects,
        )
        for callback in self._on_connect:
            self._spawn(callback(self))
        pinger = asyncio.create_task(
            early_pings(client._client, self.config.keepalive, self._pings_sent)
        )
        try:
            await self._receive(client)
        finally:
            pinger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pinger

    async def _restore(self, client: aiomqtt.Client) -> None:
        """Subscribe to every filter, then flush the outbox in order."""
        filters = [(t, 1) for t in sorted(self._reply_topics)]
        filters += [(s.filter, s.qos) for s in self._subs.values()]
        await self._subscribe_granted(client, filters)
        while (outbound := self._outbox.pop()) is not None:
            try:
                await self._send(client, outbound)
            except BaseException:
                self._outbox.requeue(outbound)
                raise

    async def _receive(self, client: aiomqtt.Client) -> None:
        """Dispatch ``client``'s messages until it disconnects (then raise its MqttError).

        aiomqtt's iterator makes a task and an ``asyncio.wait`` for every message; it is used
        only to wait when none is queued (which is also how a disconnect is noticed) and after
        every ``RECEIVE_BURST`` messages, so the handlers get their turn in a flood.
        """
        queue = client._queue
        messages = aiter(client.messages)
        burst = 0
        while True:
            if burst >= RECEIVE_BURST or queue.empty():
                burst = 0
                message = await anext(messages)
            else:
                message = queue.get_nowait()
                burst += 1
            self._dispatch(client, message)

    def _dispatch(self, client: aiomqtt.Client, message: aiomqtt.Message) -> None:
        delivery = Delivery(message, client, pending=0)
        topic = message.topic.value
        if topic in self._reply_topics:
            self._resolve_reply(payload_bytes(message.payload))
            self.acknowledge(delivery)  # resolving the future is all its handling
            return
        subs = [self._subs[f] for f in self._index.match(topic)]
        delivery.pending = len(subs)
        for sub in subs:
            sub.queue.put_nowait(delivery)
        if not subs:
            self.acknowledge(delivery)  # nobody here wants it (a filter just dropped)


def _refused(code: object) -> bool:
    """Whether a SUBACK return code (an int, or paho's ReasonCode) is a failure (0x80 up)."""
    value = getattr(code, "value", code)
    return isinstance(value, int) and value >= 0x80


async def _within(seconds: float, operation: Awaitable[T]) -> T:
    """``operation`` (an aiomqtt call given ``timeout=math.inf``), bounded to ``seconds``.

    aiomqtt bounds its waits with ``asyncio.wait_for``, which on Python 3.11 swallows a
    cancellation that arrives just as the awaited future completes: the cancelled task runs on
    and whoever awaits it waits forever (a heartbeat loop cancelled mid-publish, a test's
    teardown). ``asyncio.timeout`` lets every cancellation through.
    """
    async with asyncio.timeout(seconds):
        return await operation
