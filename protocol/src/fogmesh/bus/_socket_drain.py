"""Read every whole packet a wake-up brought, with one ``recv`` per wake-up.

paho reads a packet with three or more ``recv`` calls (the type byte, each byte of the length,
the rest) and aiomqtt's socket reader asks it for one packet per readiness of the socket. A
busy subscriber (a registry hearing 1,000 heartbeats a second) so paid a pass of the event
loop, an ``epoll_wait`` and three system calls for every message.

:func:`drain_reads` gives one paho client a read buffer: the first ``recv`` of a wake-up reads
up to :data:`READ_SIZE` bytes from the socket, and paho's reads are served from them; when
they run out, the socket is not asked again in that wake-up (paho sees "would block", keeps the
partial packet and goes on at the next readiness, which the socket's bytes still pending
signal). So every whole packet that arrived is handled in the wake-up that read it, a flood
waits at most one buffer, and what paho does with a packet is unchanged (QoS 1 PUBACKs still
go out only after handling: see :meth:`fogmesh.bus.Bus.acknowledge`).
"""

from __future__ import annotations

from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

from fogmesh.bus import _paho

__all__ = ["READ_SIZE", "drain_reads"]

READ_SIZE = 65_536
"""Bytes one wake-up reads from the socket at most (some 300 heartbeats)."""


class _ReadBuffer:
    """paho's socket read and ``loop_read`` for one client, over one buffer (paho's internals
    through :mod:`~fogmesh.bus._paho`)."""

    __slots__ = (
        "_client",
        "_data",
        "_fresh",
        "_handle_rc",
        "_pos",
        "_read_packet",
        "_recv",
        "_sock",
    )

    def __init__(self, paho: mqtt.Client) -> None:
        self._client = paho
        self._recv = _paho.raw_recv(paho)
        self._read_packet = _paho.packet_reader(paho)
        self._handle_rc = _paho.read_error_handler(paho)
        self._data = b""
        self._pos = 0
        self._fresh = False
        self._sock: Any = None

    def recv(self, bufsize: int) -> bytes:
        """At most ``bufsize`` bytes: from the buffer, or one socket read per wake-up.

        paho calls it only from its packet reader, which only :meth:`loop_read` calls: that is
        where a new connection's socket is noticed."""
        if self._pos >= len(self._data):
            if not self._fresh:
                raise BlockingIOError  # this wake-up's bytes are used up; wait for the next
            self._fresh = False
            data = self._recv(READ_SIZE)
            if not data:
                return data  # the broker closed the connection: paho handles that
            self._data, self._pos = data, 0
        start = self._pos
        self._pos = min(start + bufsize, len(self._data))
        return self._data[start : self._pos]

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        """paho's ``loop_read``, going on while the wake-up's bytes hold whole packets."""
        paho = self._client
        sock = _paho.socket_of(paho)
        if sock is None:
            return MQTTErrorCode.MQTT_ERR_NO_CONN
        if sock is not self._sock:  # a new connection: nothing buffered belongs to it
            self._sock, self._data, self._pos = sock, b"", 0
        self._fresh = True
        try:
            while True:
                rc = self._read_packet()
                if rc > 0:
                    return self._handle_rc(rc)
                if rc == MQTTErrorCode.MQTT_ERR_AGAIN:
                    return MQTTErrorCode.MQTT_ERR_SUCCESS
                if _paho.socket_of(paho) is None:  # a packet's handling closed it
                    return MQTTErrorCode.MQTT_ERR_NO_CONN
        finally:
            self._fresh = False


def drain_reads(paho: mqtt.Client) -> None:
    """Make ``paho`` read through a buffer (see the module); call before it connects."""
    reader = _ReadBuffer(paho)
    _paho.replace_reads(paho, reader.recv, reader.loop_read)
