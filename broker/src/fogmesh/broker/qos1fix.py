"""Keep QoS 1 messages in flight until they are acknowledged (an amqtt 0.12 fix).

amqtt 0.12 drops an outgoing QoS 1 message from the session's in-flight table when the PUBACK
does not come within 5 s, or when the connection dies while it waits: the message is then lost,
although MQTT 3.1.1 (4.4) requires it to be sent again when the session reconnects. A bridge
killed mid-stream lost exactly those messages. :func:`install` replaces the outgoing half of
``ProtocolHandler._handle_qos1_message_flow`` so the entry is removed only on PUBACK; amqtt's
own ``_retry_deliveries`` then resends it on reconnect. Incoming messages keep amqtt's code.
"""

from __future__ import annotations

import asyncio
from typing import Any

from amqtt.mqtt.protocol.handler import ProtocolHandler
from amqtt.session import OUTGOING, OutgoingApplicationMessage

__all__ = ["install"]

_PUBACK_TIMEOUT = 5.0
_original: Any = ProtocolHandler._handle_qos1_message_flow


async def _qos1_flow(self: Any, app_message: Any) -> None:
    if app_message.direction != OUTGOING or not isinstance(app_message, OutgoingApplicationMessage):
        await _original(self, app_message)
        return
    session = self.session
    packet_id = app_message.packet_id
    session.inflight_out[packet_id] = app_message
    dup = app_message.publish_packet is not None  # already sent once: this is a retry
    publish_packet = app_message.build_publish_packet(dup=dup)
    await self._send_packet(publish_packet)
    app_message.publish_packet = publish_packet
    waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    self._puback_waiters[packet_id] = waiter
    try:
        async with asyncio.timeout(_PUBACK_TIMEOUT):
            app_message.puback_packet = await waiter
    finally:
        self._puback_waiters.pop(packet_id, None)
    # only an acknowledged message leaves the in-flight table
    session.inflight_out.pop(packet_id, None)


def install() -> None:
    """Patch amqtt's handler (idempotent; affects this process only)."""
    ProtocolHandler._handle_qos1_message_flow = _qos1_flow
