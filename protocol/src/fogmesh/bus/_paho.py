"""The one place the bus touches paho-mqtt's and aiomqtt's private attributes.

Written against paho-mqtt 2.2 and aiomqtt 2.5 (both 2.x). Each function names the internals it
relies on and why the public API does not do. :data:`RELIED_ON` lists them all, and
``tests/bus/test_paho_internals.py`` fails, naming what is gone, when an upgrade removes or
changes one: read this module again before raising either pin.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncio

    import aiomqtt
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import MQTTErrorCode

__all__ = [
    "RELIED_ON",
    "ack",
    "close_socket",
    "disconnected",
    "incoming",
    "is_connected",
    "packet_reader",
    "paho_of",
    "ping_now",
    "queue_packet",
    "raw_recv",
    "read_error_handler",
    "replace_reads",
    "set_manual_ack",
    "socket_of",
]

RELIED_ON: dict[str, tuple[str, ...]] = {
    "aiomqtt.Client": ("_client", "_queue", "_disconnected"),
    "paho.mqtt.client.Client": (
        "_packet_queue",
        "_sock_close",
        "_send_pingreq",
        "_ping_t",
        "_msgtime_mutex",
        "_last_msg_out",
        "_last_bytes_received",
        "_sock",
        "_sock_recv",
        "_packet_read",
        "_loop_rc_handle",
        "loop_read",
    ),
}
"""The private attributes this module uses, by the class whose instances carry them."""


# -- aiomqtt 2.5 ---------------------------------------------------------------------------


def paho_of(client: aiomqtt.Client) -> mqtt.Client:
    """The paho client ``client`` wraps (aiomqtt 2.5 ``Client._client``).

    The bus sets on it what aiomqtt does not pass on (manual acknowledgement, the read buffer,
    the half-keepalive pings)."""
    return client._client


def incoming(client: aiomqtt.Client) -> asyncio.Queue[aiomqtt.Message]:
    """The queue of messages ``client`` has received (aiomqtt 2.5 ``Client._queue``).

    aiomqtt's iterator makes a task and an ``asyncio.wait`` for every message; the bus takes
    the ones already queued from here directly (``Connection._receive``)."""
    return client._queue


def disconnected(client: aiomqtt.Client) -> asyncio.Future[None]:
    """The future aiomqtt 2.5 completes when ``client`` is gone (``Client._disconnected``).

    Its exit awaits it without a deadline; the bus completes it itself when a broker does not
    take the DISCONNECT (``Connection._bound_disconnect``)."""
    return client._disconnected


def close_socket(client: aiomqtt.Client) -> None:
    """Close ``client``'s socket now (paho 2.2 ``_sock_close``): there is no public call that
    drops a connection without first writing a DISCONNECT, which a stalled broker never reads."""
    client._client._sock_close()


def set_manual_ack(client: aiomqtt.Client) -> None:
    """QoS 1 PUBACKs only when the bus says so (paho's public ``manual_ack_set``, reached
    through ``Client._client``: aiomqtt 2.5 takes no ``manual_ack`` argument)."""
    client._client.manual_ack_set(True)


def ack(client: aiomqtt.Client, mid: int, qos: int) -> None:
    """paho's own acknowledgement of message ``mid`` (public ``ack``; aiomqtt 2.5 wraps none)."""
    client._client.ack(mid, qos)


def is_connected(client: aiomqtt.Client) -> bool:
    """Whether ``client``'s paho connection is up (public ``is_connected`` via ``_client``)."""
    return client._client.is_connected()


def queue_packet(client: aiomqtt.Client, command: int, packet: bytes) -> None:
    """Queue ``packet`` (already framed) on paho's outgoing queue (paho 2.2
    ``_packet_queue(command, packet, mid, qos)``).

    It keeps the bus's batched PUBACKs in order with paho's other packets and writes them when
    the socket is writable; paho's public ``ack`` queues and writes each on its own."""
    client._client._packet_queue(command, packet, 0, 0)


# -- paho-mqtt 2.2: keepalive --------------------------------------------------------------


def ping_now(paho: mqtt.Client) -> bool:
    """Send a PINGREQ unless one is outstanding; True when it was sent.

    paho 2.2 pings only once a keepalive and has no public ping. The bookkeeping is its own
    keepalive check's (``_send_pingreq`` sets ``_ping_t``; both message times, under
    ``_msgtime_mutex``, set to now), so paho does not ping again in between, and a PINGRESP
    that does not come within a keepalive still closes the connection."""
    if not paho.is_connected() or paho._ping_t != 0:
        return False
    paho._send_pingreq()
    now = time.monotonic()  # paho 2.2's time_func
    with paho._msgtime_mutex:
        paho._last_msg_out = now
        paho._last_bytes_received = now
    return True


# -- paho-mqtt 2.2: the read path ----------------------------------------------------------
# The bus's read buffer (``_socket_drain``) stands in for paho's socket reads: paho reads a
# packet with three or more ``recv`` calls and has no hook to read ahead.


def socket_of(paho: mqtt.Client) -> Any:
    """paho's current socket (``_sock``), or None between connections."""
    return paho._sock


def raw_recv(paho: mqtt.Client) -> Callable[[int], bytes]:
    """paho's own socket read (``_sock_recv``), for the buffer to call."""
    return paho._sock_recv


def packet_reader(paho: mqtt.Client) -> Callable[[], MQTTErrorCode]:
    """paho's reader of one packet from its socket reads (``_packet_read``)."""
    return paho._packet_read


def read_error_handler(paho: mqtt.Client) -> Callable[[MQTTErrorCode], MQTTErrorCode]:
    """What paho's ``loop_read`` does with a failed read (``_loop_rc_handle``)."""
    return paho._loop_rc_handle


def replace_reads(
    paho: mqtt.Client,
    recv: Callable[[int], bytes],
    loop_read: Callable[[int], MQTTErrorCode],
) -> None:
    """Make ``paho`` read through ``recv`` and ``loop_read``.

    Instance attributes shadow paho's methods: its packet reader calls ``self._sock_recv`` and
    aiomqtt's socket callback calls ``loop_read``, so both then go through the buffer."""
    paho._sock_recv = recv  # type: ignore[method-assign,assignment]
    paho.loop_read = loop_read  # type: ignore[method-assign,assignment]
