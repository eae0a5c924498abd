"""Manual acknowledgement: a QoS 1 PUBACK only once a message's handlers are done.

paho's ``manual_ack`` is on for every bus connection, so a message still queued or being handled
when the service dies is delivered again to its persistent session. A PUBACK goes out only on
the connection the message came in on: after a reconnect the broker sends it again (the same
packet id could name another message by then). The PUBACKs that become due in one turn of the
event loop leave in one write (one packet each, in the order they were handled), not one
system call each.
"""

from __future__ import annotations

import asyncio
import struct

import aiomqtt

from fogmesh.bus import _paho
from fogmesh.bus._state import BusState
from fogmesh.bus._subscription import Delivery

__all__ = ["Acknowledger"]

_PUBACK = struct.Struct("!BBH")  # MQTT PUBACK: type 0x40, remaining length 2, packet id
_PUBACK_TYPE = 0x40


class Acknowledger:
    """Gathers the PUBACKs due this turn of the loop and writes them together."""

    __slots__ = ("_client", "_mids", "_state")

    def __init__(self, state: BusState) -> None:
        self._state = state
        self._mids: list[int] = []
        """Packet ids handled this turn of the loop whose PUBACK is not yet written."""
        self._client: aiomqtt.Client | None = None
        """The connection those packet ids came in on."""

    def acknowledge(self, delivery: Delivery) -> None:
        """Send the PUBACK of a handled QoS 1 message, on the connection it came from."""
        message = delivery.message
        client = delivery.client
        if message.qos < 1 or client is not self._state.client:
            return
        if message.qos > 1:
            _paho.ack(client, message.mid, message.qos)
            return
        if self._client is not client:
            self._mids, self._client = [], client  # any left are an old connection's
        if not self._mids:
            asyncio.get_running_loop().call_soon(self._send, client)
        self._mids.append(message.mid)

    def _send(self, client: aiomqtt.Client) -> None:
        """Write the PUBACKs gathered this turn as one packet write on their connection."""
        if self._client is not client:
            return
        mids, self._mids = self._mids, []
        if not mids or client is not self._state.client or not _paho.is_connected(client):
            return  # the connection is gone: the broker sends these messages again
        if len(mids) == 1:
            packet = _PUBACK.pack(_PUBACK_TYPE, 2, mids[0])
        else:
            packet = b"".join([_PUBACK.pack(_PUBACK_TYPE, 2, mid) for mid in mids])
        _paho.queue_packet(client, _PUBACK_TYPE, packet)
