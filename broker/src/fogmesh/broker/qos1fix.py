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

The outgoing half itself (the write, the in-flight table, the PUBACK's future, giving up on it)
is :mod:`fogmesh.broker.outflight`; resends go through it in order, so a reconnected session's
resends leave before anything sent to it later.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable
from typing import Any

from amqtt.errors import AMQTTError
from amqtt.mqtt.protocol.handler import ProtocolHandler
from amqtt.session import INCOMING, OUTGOING, OutgoingApplicationMessage

from fogmesh.broker import outflight

__all__ = [
    "broker_of",
    "install",
    "outgoing_message",
    "publish_tracked",
    "resend_in_flight",
    "resend_orphans",
]

log = logging.getLogger(__name__)
_original: Any = ProtocolHandler._handle_qos1_message_flow


def broker_of(handler: Any) -> Any:
    """The broker ``handler``'s connection belongs to (None outside one)."""
    return getattr(handler.plugins_manager.app_context, "_broker_instance", None)


def outgoing_message(
    handler: Any, topic: str, data: bytes | bytearray, qos: int | None, retain: bool
) -> OutgoingApplicationMessage:
    """A new message for ``handler``'s client, with the session's next packet id for QoS 1
    and 2 (amqtt's ``mqtt_publish``, its errors too)."""
    session = handler.session
    if session is None:
        raise AMQTTError("Session is not initialized.")
    packet_id = session.next_packet_id if qos else None
    if packet_id is not None and packet_id in session.inflight_out:
        raise AMQTTError(f"A message with the same packet ID '{packet_id}' is already in flight")
    return OutgoingApplicationMessage(packet_id, topic, qos, data, retain)


def _outgoing(app_message: Any) -> bool:
    return (
        app_message.direction == OUTGOING
        and app_message.qos == 1
        and isinstance(app_message, OutgoingApplicationMessage)
    )


async def _qos1_flow(self: Any, app_message: Any) -> None:
    if app_message.direction == INCOMING:
        journal = getattr(broker_of(self), "journal_incoming", None)
        if journal is not None:
            await journal(self.session, app_message)  # durable before amqtt sends the PUBACK
    if not _outgoing(app_message):
        await _original(self, app_message)
        return
    # in flight until its PUBACK; the future fails (TimeoutError) if outflight's sweep gives
    # up on it, and is cancelled if the connection ends: the message stays in flight
    await outflight.send(self, app_message)


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
    message = outgoing_message(handler, topic, data, qos, retain)
    if qos == 1:
        outflight.track(message, on_ack)
        await handler._handle_message_flow(message)
        return
    await handler._handle_message_flow(message)
    on_ack()


_resends: set[asyncio.Task[None]] = set()


async def _resend(handler: Any, app_message: Any) -> None:
    try:
        await handler._handle_message_flow(app_message)
    except (TimeoutError, asyncio.CancelledError, OSError, AMQTTError) as exc:
        # still in flight: the next sweep (or the next connection) tries again
        log.debug("resend of %s failed: %r", app_message.packet_id, exc)


def _resend_soon(handler: Any, app_message: Any) -> None:
    """Send ``app_message`` again: an outgoing QoS 1 one now, in order (outflight), any other
    by amqtt's flow in a task."""
    if _outgoing(app_message):
        outflight.send(handler, app_message)
        return
    task = asyncio.ensure_future(_resend(handler, app_message))
    _resends.add(task)
    task.add_done_callback(_resends.discard)


_resent: weakref.WeakSet[Any] = weakref.WeakSet()


def resend_in_flight(handler: Any) -> None:
    """[MQTT-4.4.0-1]: send what is in flight for ``handler``'s session again, in order,
    without waiting for the acks (the broker calls it with the CONNACK; amqtt's ``start``
    then resends nothing twice)."""
    _resent.add(handler)
    session = handler.session
    if session is None:
        return
    for message in [*session.inflight_in.values(), *session.inflight_out.values()]:
        _resend_soon(handler, message)


async def _retry_deliveries(self: Any) -> None:
    """amqtt's resend at ``start``, unless :func:`resend_in_flight` already did it."""
    if self in _resent:
        _resent.discard(self)
        return
    resend_in_flight(self)
    _resent.discard(self)


def resend_orphans(handler: Any) -> int:
    """Resend, on ``handler``'s connection, its session's QoS 1 messages no one waits for
    (after giving up the PUBACKs waited for too long, :func:`fogmesh.broker.outflight.expire`).

    Returns how many were resent (an unanswered one stays in flight).
    """
    session = handler.session
    if session is None:
        return 0
    outflight.expire(handler)
    orphans = [
        m
        for pid, m in list(session.inflight_out.items())
        if pid not in handler._puback_waiters and _outgoing(m)
    ]
    for message in orphans:
        _resend_soon(handler, message)
    return len(orphans)


def install() -> None:
    """Patch amqtt's handler (idempotent; affects this process only)."""
    ProtocolHandler._handle_qos1_message_flow = _qos1_flow
    ProtocolHandler._retry_deliveries = _retry_deliveries
