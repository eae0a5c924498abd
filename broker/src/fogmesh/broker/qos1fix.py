"""Keep QoS 1 messages in flight until they are acknowledged (an amqtt 0.12 fix).

amqtt 0.12 drops an outgoing QoS 1 message from the session's in-flight table when the PUBACK
does not come within 5 s, or when the connection dies while it waits: the message is then lost,
although MQTT 3.1.1 (4.4) requires it to be sent again when the session reconnects. A bridge
killed mid-stream lost exactly those messages. :func:`install` replaces the outgoing half of
``ProtocolHandler._handle_qos1_message_flow`` so the entry is removed only on PUBACK; amqtt's
own ``_retry_deliveries`` then resends it on reconnect. Incoming messages keep amqtt's code.

A message can also lose its connection while its session lives on: a newer connection of the
same client took the session over while the message was being sent on the old one, or its
PUBACK did not come within a minute. :func:`resend_orphans` sends such messages again on the
session's current connection (the broker calls it every few seconds), instead of leaving them
for the next reconnect.

amqtt's ``_retry_deliveries`` (run by ``start()`` when a session connects) also waited for
every resent message's PUBACK before the broker began reading the client's SUBSCRIBE and
PUBLISH packets: a client that acknowledges only what it has read after subscribing (a bridge
link) stalled it for 5 s, the messages timed out and went out again as duplicates. Resends now
go out in order, as tasks, without holding up the connection.

Incoming: amqtt acknowledges a QoS 1 PUBLISH as soon as it is queued in memory for broadcast.
If the broker defines ``journal_incoming(session, message)`` (:class:`MeshBroker` does: it
writes the message to its SQLite journal, committed with the others of the loop pass), that is
awaited first, so the PUBACK follows only a durable copy.

Outgoing messages can carry a callback for their PUBACK (:func:`publish_tracked`): the broker
deletes a delivered offline-queue row from disk only then, on whichever connection the
PUBACK finally arrives (a resend keeps the callback: it goes with the message).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from amqtt.errors import AMQTTError
from amqtt.mqtt.protocol.handler import ProtocolHandler
from amqtt.session import INCOMING, OUTGOING, OutgoingApplicationMessage

__all__ = ["install", "publish_tracked", "resend_orphans", "settle"]

log = logging.getLogger(__name__)
# amqtt gave up after 5 s; a busy link acknowledging a few thousand queued messages takes
# longer, and each give-up became a resend (more load, duplicates). A PUBACK is waited for this
# long before the message counts as orphaned and is resent (a hung client holds no task forever).
_PUBACK_TIMEOUT = 60.0
_original: Any = ProtocolHandler._handle_qos1_message_flow
# id(message) -> (message, callback): amqtt's messages have __slots__ and no weakref; the
# message is held here so its id() cannot be reused before its PUBACK pops the entry
_on_puback: dict[int, tuple[Any, Callable[[], None]]] = {}


def _journal_of(handler: Any) -> Any:
    broker = getattr(handler.plugins_manager.app_context, "_broker_instance", None)
    return getattr(broker, "journal_incoming", None)


async def _qos1_flow(self: Any, app_message: Any) -> None:
    if app_message.direction == INCOMING:
        journal = _journal_of(self)
        if journal is not None:
            await journal(self.session, app_message)  # durable before amqtt sends the PUBACK
    if app_message.direction != OUTGOING or not isinstance(app_message, OutgoingApplicationMessage):
        await _original(self, app_message)
        return
    session = self.session
    packet_id = app_message.packet_id
    session.inflight_out[packet_id] = app_message
    dup = app_message.publish_packet is not None  # already sent once: this is a retry
    publish_packet = app_message.build_publish_packet(dup=dup)
    # the waiter exists before the send, so resend_orphans never takes a message being sent
    waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    self._puback_waiters[packet_id] = waiter
    try:
        await self._send_packet(publish_packet)
        app_message.publish_packet = publish_packet
        async with asyncio.timeout(_PUBACK_TIMEOUT):
            app_message.puback_packet = await waiter
    finally:
        if self._puback_waiters.get(packet_id) is waiter:
            del self._puback_waiters[packet_id]
    # only an acknowledged message leaves the in-flight table
    session.inflight_out.pop(packet_id, None)
    if (tracked := _on_puback.pop(id(app_message), None)) is not None:
        tracked[1]()


async def publish_tracked(
    handler: Any,
    topic: str,
    data: bytes | bytearray,
    qos: int,
    *,
    retain: bool,
    on_ack: Callable[[], None],
) -> None:
    """amqtt's ``mqtt_publish``, calling ``on_ack`` once the client acknowledged the message.

    For QoS 1 the callback stays with the in-flight message, so it also runs when a resend
    (:func:`resend_orphans`, a reconnect) is what gets the PUBACK. QoS 2 calls it when amqtt's
    flow completes here; QoS 0 when sent.
    """
    session = handler.session
    if session is None:
        raise AMQTTError("Session is not initialized.")
    packet_id = session.next_packet_id if qos else None
    if packet_id is not None and packet_id in session.inflight_out:
        raise AMQTTError(f"A message with the same packet ID '{packet_id}' is already in flight")
    message = OutgoingApplicationMessage(packet_id, topic, qos, data, retain)
    if qos == 1:
        _on_puback[id(message)] = (message, on_ack)
        await handler._handle_message_flow(message)
        return
    await handler._handle_message_flow(message)
    on_ack()


def settle(app_message: Any) -> None:
    """``app_message`` left its session's in-flight table for good (handed on to another
    broker, :mod:`fogmesh.broker.handoff`): run its PUBACK callback as if acknowledged."""
    if (tracked := _on_puback.pop(id(app_message), None)) is not None:
        tracked[1]()


_resends: set[asyncio.Task[None]] = set()


async def _resend(handler: Any, app_message: Any) -> None:
    try:
        await handler._handle_message_flow(app_message)
    except (TimeoutError, asyncio.CancelledError, OSError, AMQTTError) as exc:
        # still in flight: the next sweep (or the next connection) tries again
        log.debug("resend of %s failed: %r", app_message.packet_id, exc)


def _spawn_resend(handler: Any, app_message: Any) -> None:
    task = asyncio.ensure_future(_resend(handler, app_message))
    _resends.add(task)
    task.add_done_callback(_resends.discard)


async def _retry_deliveries(self: Any) -> None:
    """[MQTT-4.4.0-1]: send what is in flight again, in order, without waiting for the acks."""
    session = self.session
    if session is None:
        return
    for message in [*session.inflight_in.values(), *session.inflight_out.values()]:
        _spawn_resend(self, message)


def resend_orphans(handler: Any) -> int:
    """Resend, on ``handler``'s connection, its session's QoS 1 messages no one waits for.

    Returns how many were resent (each as a task; an unanswered one stays in flight).
    """
    session = handler.session
    if session is None:
        return 0
    orphans = [
        m
        for pid, m in list(session.inflight_out.items())
        if pid not in handler._puback_waiters
        and m.qos == 1
        and isinstance(m, OutgoingApplicationMessage)
    ]
    for message in orphans:
        _spawn_resend(handler, message)
    return len(orphans)


def install() -> None:
    """Patch amqtt's handler (idempotent; affects this process only)."""
    ProtocolHandler._handle_qos1_message_flow = _qos1_flow
    ProtocolHandler._retry_deliveries = _retry_deliveries
