"""The embedded broker's read loop: every packet already buffered is read in the same pass.

amqtt 0.12 reads each packet's fixed header through ``asyncio.wait_for`` (its keepalive
timeout), which wraps the read in a task of its own: one or two passes of the event loop per
packet, even when the socket read brought a hundred. So a burst was handled one message per
pass, and whatever joins the work of one pass (the connection's writes, :mod:`pass_writer`;
the journal's commits) had nothing to join. :func:`install` replaces the loop with amqtt's own,
the read deadline kept with ``asyncio.timeout`` in the loop's task (no task per packet; a
buffered packet is read without suspending, and without a deadline: a header already in the
buffer cannot keep the read waiting). A QoS 1 PUBLISH and a PUBACK are handled
in the same pass, without a task (:mod:`fogmesh.broker.qos1_inline`). Everything else is
amqtt's: the packet classes, one handler task per other packet (in arrival order), the
read-timeout and error handling, the end.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from typing import Any

from amqtt.errors import AMQTTError, MQTTError, NoDataError, ProtocolHandlerError
from amqtt.events import MQTTEvents
from amqtt.mqtt import packet_class
from amqtt.mqtt.packet import (
    CONNACK,
    CONNECT,
    DISCONNECT,
    PINGREQ,
    PINGRESP,
    PUBACK,
    PUBCOMP,
    PUBLISH,
    PUBREC,
    PUBREL,
    RESERVED_0,
    RESERVED_15,
    SUBACK,
    SUBSCRIBE,
    UNSUBACK,
    UNSUBSCRIBE,
    MQTTFixedHeader,
)
from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler

from fogmesh.broker import qos1_inline

__all__ = ["HANDLERS", "install"]

log = logging.getLogger(__name__)

HANDLERS = {
    CONNACK: "handle_connack",
    SUBSCRIBE: "handle_subscribe",
    UNSUBSCRIBE: "handle_unsubscribe",
    SUBACK: "handle_suback",
    UNSUBACK: "handle_unsuback",
    PUBACK: "handle_puback",
    PUBREC: "handle_pubrec",
    PUBREL: "handle_pubrel",
    PUBCOMP: "handle_pubcomp",
    PINGREQ: "handle_pingreq",
    PINGRESP: "handle_pingresp",
    PUBLISH: "handle_publish",
    DISCONNECT: "handle_disconnect",
}
"""The packet types amqtt's loop hands to a task, by the handler method it runs."""


async def _reader_loop(self: Any) -> None:
    if self.session is None:
        raise AMQTTError("Session is not initialized.")
    if not self._reader_ready:
        raise ProtocolHandlerError("Reader ready is not initialized.")
    running: collections.deque[asyncio.Future[Any]] = collections.deque()
    keepalive: int | None = self.session.keep_alive
    if keepalive is not None and keepalive <= 0:
        keepalive = None
    while True:
        try:
            if not await _read_one(self, running, keepalive):
                break
        except MQTTError:
            log.debug("message discarded")
        except asyncio.CancelledError:
            break
        except TimeoutError:
            self.handle_read_timeout()
        except NoDataError:
            log.debug("%s: no data available", self.session.client_id)
        except Exception as exc:  # noqa: BLE001 (as amqtt's loop: the connection ends)
            log.warning("unhandled exception in the read loop: %r", exc)
            break
    while running:
        running.popleft().cancel()
    await self.handle_connection_closed()
    self._reader_stopped.set()
    await self.stop()


def _header_buffered(reader: Any) -> bool:
    """Whether a whole fixed header (its type byte and remaining length) is already in
    ``reader``'s buffer (an asyncio stream's, under amqtt's adapter)."""
    buffer = getattr(getattr(reader, "_reader", None), "_buffer", None)
    if not buffer:
        return False
    if len(buffer) >= 5:  # a fixed header is 5 bytes at most
        return True
    return any(not byte & 0x80 for byte in buffer[1:])


async def _read_one(
    self: Any, running: collections.deque[asyncio.Future[Any]], keepalive: int | None
) -> bool:
    """Read one packet and start its handling; False at the end of the stream."""
    self._reader_ready.set()
    while running and running[0].done():
        running.popleft()
    if self.reader is None:
        log.warning("reader is not initialized")
        return False
    if _header_buffered(self.reader):  # read without waiting: no deadline to keep
        fixed_header = await MQTTFixedHeader.from_stream(self.reader)
    else:
        async with asyncio.timeout(keepalive):
            fixed_header = await MQTTFixedHeader.from_stream(self.reader)
    if not fixed_header:
        return False
    if fixed_header.packet_type in (RESERVED_0, RESERVED_15):
        log.warning("%s sent a reserved packet type: closing", self.session.client_id)
        await self.handle_connection_closed()
        return True
    packet = await packet_class(fixed_header).from_stream(self.reader, fixed_header=fixed_header)
    await self.plugins_manager.fire_event(
        MQTTEvents.PACKET_RECEIVED, packet=packet, session=self.session
    )
    kind = packet.fixed_header.packet_type if packet.fixed_header else None
    if kind == CONNECT:
        # as amqtt: the connection is set up before any other packet is handled
        await self.handle_connect(packet)
    elif kind == PUBLISH and qos1_inline.take_publish(self, packet, running):
        pass  # QoS 1: acknowledged once journalled, without a task (qos1_inline)
    elif kind == PUBACK and qos1_inline.take_puback(self, packet):
        pass
    elif (name := HANDLERS.get(kind)) is not None:
        running.append(asyncio.create_task(getattr(self, name)(packet)))
    else:
        log.warning("%s sent an unhandled packet type %s", self.session.client_id, kind)
    return True


def install() -> None:
    """Use this loop for the broker's connections (idempotent; this process only)."""
    BrokerProtocolHandler._reader_loop = _reader_loop
