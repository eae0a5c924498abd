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

from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

__all__ = ["READ_SIZE", "drain_reads"]

READ_SIZE = 65_536
"""Bytes one wake-up reads from the socket at most (some 300 heartbeats)."""


class _ReadBuffer:
    """paho's ``_sock_recv`` and ``loop_read`` for one client, over one buffer."""

    __slots__ = ("_data", "_fresh", "_paho", "_pos", "_recv", "_sock")

    def __init__(self, paho: mqtt.Client) -> None:
        self._paho = paho
        self._recv: Callable[[int], bytes] = paho._sock_recv
        self._data = b""
        self._pos = 0
        self._fresh = False
        self._sock: Any = None

    def recv(self, bufsize: int) -> bytes:
        """At most ``bufsize`` bytes: from the buffer, or one socket read per wake-up."""
        sock = self._paho._sock
        if sock is not self._sock:  # a new connection: nothing buffered belongs to it
            self._sock, self._data, self._pos = sock, b"", 0
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
        paho = self._paho
        self._fresh = True
        try:
            while True:
                if paho._sock is None:
                    return MQTTErrorCode.MQTT_ERR_NO_CONN
                rc = paho._packet_read()
                if rc > 0:
                    return paho._loop_rc_handle(rc)
                if rc == MQTTErrorCode.MQTT_ERR_AGAIN:
                    return MQTTErrorCode.MQTT_ERR_SUCCESS
        finally:
            self._fresh = False


def drain_reads(paho: mqtt.Client) -> None:
    """Make ``paho`` read through a buffer (see the module); call before it connects."""
    reader = _ReadBuffer(paho)
    # instance attributes shadow paho's methods: its packet reader and aiomqtt's socket
    # callback (which calls ``loop_read``) then go through the buffer
    paho._sock_recv = reader.recv  # type: ignore[method-assign]
    paho.loop_read = reader.loop_read  # type: ignore[method-assign]
