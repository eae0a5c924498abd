"""The embedded broker's QoS 1 packets handled in the pass that read them, without a task.

amqtt runs every packet it reads in a task of its own (``handle_publish``, ``handle_puback``)
and every message it sends to a subscriber in another (``mqtt_publish``, which waited for the
PUBACK under a timer of its own): three tasks, a timer and a chain of coroutines for each
message that crosses the broker. Here:

* :func:`take_publish`: an incoming QoS 1 PUBLISH joins the pass's journal commit
  (:meth:`fogmesh.broker.journal.InboundJournal.journal_incoming_soon`); once committed, the
  message is queued for broadcast and its PUBACK written, in arrival order. A failed commit
  acknowledges nothing (the client sends it again); a connection that ends first cancels the
  wait (the row is dropped: the message was never acknowledged).
* :func:`take_puback`: a PUBACK resolves its message's future at once (amqtt's
  ``handle_puback``, :mod:`fogmesh.broker.outflight`).
* :func:`deliver`: the broadcast's and the offline queue's one way to send a message to a
  client; a QoS 1 one goes through :func:`fogmesh.broker.outflight.send` (written in this pass
  when the connection's writes do not wait, in turn otherwise).

An incoming PUBLISH takes amqtt's task when its connection's writer is not a
:class:`fogmesh.broker.pass_writer.PassWriter` or a plugin listens to sent packets. The packets
on the wire are amqtt's, byte for byte.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from functools import partial
from typing import Any

from amqtt.errors import AMQTTError
from amqtt.mqtt.constants import QOS_1
from amqtt.mqtt.puback import PubackPacket
from amqtt.session import IncomingApplicationMessage

from fogmesh.broker import outflight, qos1fix

__all__ = ["deliver", "take_puback", "take_publish"]

log = logging.getLogger(__name__)


def take_publish(handler: Any, packet: Any, running: deque[asyncio.Future[Any]]) -> bool:
    """Handle an incoming QoS 1 PUBLISH inline; False if amqtt's task must take it.

    The journal's wait goes into ``running`` (the read loop cancels what is left there when
    the connection ends)."""
    if packet.qos != QOS_1 or packet.topic_name is None or packet.data is None:
        return False
    header = packet.variable_header
    if header is None or header.packet_id is None or handler.session is None:
        return False
    if not outflight.writes_inline(handler):
        return False
    message = IncomingApplicationMessage(
        header.packet_id, packet.topic_name, QOS_1, packet.data, packet.retain_flag
    )
    message.publish_packet = packet
    broker = qos1fix.broker_of(handler)
    soon = getattr(broker, "journal_incoming_soon", None)
    waiter = None if soon is None else soon(handler.session, message)
    if waiter is None:
        _acknowledge(handler, message)
        return True
    running.append(waiter)
    waiter.add_done_callback(partial(_committed, handler, broker, message))
    return True


def _committed(handler: Any, broker: Any, message: Any, waiter: asyncio.Future[int]) -> None:
    if waiter.cancelled():  # the connection ended first: never acknowledged
        return
    if (exc := waiter.exception()) is not None:
        log.warning(
            "message %s on %s not stored, not acknowledged: %r",
            message.packet_id,
            message.topic,
            exc,
        )
        return
    broker.journalled(message, waiter.result())
    _acknowledge(handler, message)


def _acknowledge(handler: Any, message: Any) -> None:
    """Queue a durable incoming message for broadcast and write its PUBACK (amqtt's order)."""
    session = handler.session
    if session is None:
        return
    session.delivered_message_queue.put_nowait(message)
    puback = PubackPacket.build(message.packet_id)
    # a PUBACK is 4 bytes: written even when the connection's writes wait (the client's own
    # publishing is what they answer)
    handler.writer.write(puback.to_bytes())
    message.puback_packet = puback


def take_puback(handler: Any, packet: Any) -> bool:
    """Resolve a PUBACK's waiter inline (amqtt's ``handle_puback``, its warnings too)."""
    if packet.variable_header is None:
        return False
    packet_id = packet.variable_header.packet_id
    waiter = handler._puback_waiters.get(packet_id)
    if waiter is None:
        log.warning("Received PUBACK for unknown pending message Id: '%s'", packet_id)
    elif waiter.done():
        log.warning("PUBACK waiter with Id '%s' already done", packet_id)
    else:
        waiter.set_result(packet)
    return True


def deliver(
    handler: Any,
    topic: str,
    data: bytes | bytearray,
    qos: int | None,
    *,
    retain: bool,
    on_ack: Callable[[], None] | None = None,
) -> asyncio.Future[Any]:
    """Publish to ``handler``'s client: a QoS 1 message through
    :func:`fogmesh.broker.outflight.send` (the future is its PUBACK), any other by amqtt's flow
    in a task (the future is that task).

    ``on_ack`` runs once the client acknowledged the message, on whichever connection of the
    session that PUBACK comes (:func:`fogmesh.broker.qos1fix.publish_tracked`)."""
    if qos == QOS_1:
        try:
            message = qos1fix.outgoing_message(handler, topic, data, qos, retain)
        except AMQTTError:  # amqtt's path raises it again, in its task (logged there)
            message = None
        if message is not None:
            if on_ack is not None:
                outflight.track(message, on_ack)
            return outflight.send(handler, message)
    if on_ack is not None and qos:
        publish = qos1fix.publish_tracked(handler, topic, data, qos, retain=retain, on_ack=on_ack)
    else:
        publish = handler.mqtt_publish(topic, data, qos, retain=retain)
    return asyncio.ensure_future(publish)
