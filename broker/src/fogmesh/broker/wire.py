"""A link's sockets: the bytes that cross them, counted; and fewer system calls to send them.

:func:`count_bytes` counts every byte paho writes to or reads from a link client's socket
(:class:`WireBytes`, per direction): the MQTT packets whole, fixed headers, PINGREQs, CONNECTs
and the status publishes included. Under TLS these are the bytes inside TLS (record overhead
and TCP/IP headers are not counted). The link reports them in its status (docs/mesh.md).

paho (under aiomqtt) writes each queued packet with its own ``send()``: a burst of 200 PUBACKs
to the local broker, or a batch of 200 PUBLISHes to the remote one, costs 200 system calls, and
on loopback each one also runs the receiver's TCP path. Profiled on the site broker during
``bench/mesh.py``, ``send()`` from paho was 18% of the process. :func:`coalesce_writes` joins the
packets waiting in paho's queue into one buffer (up to :data:`MAX_JOINED` bytes) before paho
writes them, so a burst leaves in as few ``send()`` calls as its size allows.

Only packets paho does nothing with after writing are joined: a QoS 0 PUBLISH (paho reports it
published once written) and a DISCONNECT (paho closes the socket once written) stay on their
own, so every callback and state change happens as before. The wire bytes and their order are
unchanged; a QoS 1 PUBLISH still counts as delivered only on its PUBACK.

:func:`lean_properties`: on an MQTT 5 connection (a Mosquitto end) paho builds a
``Properties`` for every PUBLISH and PUBACK it decodes, and each one builds its two tables of
27 property names and types afresh: a profile of ``links-only`` (two Mosquittos) found that a
quarter of the link's CPU. :class:`LeanProperties` shares one copy of the tables (paho only
reads them) and skips the clearing walk when a fresh object unpacks an empty property list,
the common case; every other behaviour is paho's own.

:func:`lean_paho` makes that apply to every link client (the 3.1.1 end, an amqtt broker, too:
each PUBACK built a ``Properties`` with its tables, 3.4% of the site broker's CPU in a py-spy
profile of a 20,000-message QoS 1 burst through an amqtt site), and adds the rest of paho's
per-message objects: a PUBACK that is only a packet id is decoded without paho's generic path
(:func:`~fogmesh.bus._paho_lean.decode_puback`, with a :class:`LeanReasonCode`, which shares
paho's table of codes instead of copying it per object: ``decode_puback`` took 5.0% of the
profile, about 14 us a PUBACK in a micro-benchmark, now 1.3 us); and each message published
or received gets a :class:`LeanMessageInfo`, whose ``threading.Condition`` is made only when
someone waits for the message (nothing in fogmesh does; aiomqtt and the :class:`Publisher` use
``on_publish``): paho's ``MQTTMessageInfo`` built one per message, 6.1% of the profile.
:func:`quiet_debug_log`: paho hands a debug line per packet to aiomqtt's logger, which drops
it (``_easy_log``, 1.0% of the profile, 0.7 us a line; 0.26 us now): it now returns at once
while nothing takes debug lines. What ``on_publish`` and ``on_message`` receive is equal in value to
what paho's own objects give (``tests/bus/test_paho_lean.py``).

:func:`no_filtered_callbacks`: paho looks every arriving PUBLISH's topic up in its tree of
per-filter callbacks, which the link never sets (9% of the link's CPU in a ``links-only``
burst); :class:`EmptyFirst` answers at once while the tree is empty.

Every paho and aiomqtt internal these use is reached through ``fogmesh.bus._paho``,
``fogmesh.bus._paho_wire`` and ``fogmesh.bus._paho_lean`` (``tests/bus/test_paho_internals.py``
checks them on an upgrade).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aiomqtt
from aiomqtt import MqttCodeError
from paho.mqtt.client import DISCONNECT, MQTT_ERR_SUCCESS, PUBLISH

from fogmesh.bus import _paho, _paho_wire
from fogmesh.bus._paho_lean import (
    LeanMessageInfo,
    LeanProperties,
    LeanReasonCode,
    lean_paho,
    lean_properties,
)
from fogmesh.bus._paho_wire import EmptyFirst

__all__ = [
    "MAX_JOINED",
    "EmptyFirst",
    "LeanMessageInfo",
    "LeanProperties",
    "LeanReasonCode",
    "Publisher",
    "Sent",
    "WireBytes",
    "coalesce_writes",
    "count_bytes",
    "join_queued",
    "lean_paho",
    "lean_properties",
    "no_filtered_callbacks",
    "quiet_debug_log",
]

MAX_JOINED = 256 * 1024
"""Bytes joined into one buffer at most (a socket send buffer's worth on Linux)."""


def _joinable(packet: dict[str, Any]) -> bool:
    command = int(packet["command"]) & 0xF0
    if command == DISCONNECT:
        return False
    return not (command == PUBLISH and packet["qos"] == 0)


def join_queued(queue: deque[dict[str, Any]]) -> None:
    """Merge runs of joinable, unstarted packets in paho's out queue, in place and in order
    (an entry's keys: ``fogmesh.bus._paho_wire.OUT_PACKET_KEYS``)."""
    if len(queue) < 2:
        return
    merged: deque[dict[str, Any]] = deque()
    run: list[dict[str, Any]] = []
    size = 0

    def flush() -> None:
        nonlocal size
        if len(run) == 1:
            merged.append(run[0])
        elif run:
            data = b"".join(bytes(p["packet"]) for p in run)
            # a QoS 1 packet's dict stands for the run: paho only reads its bytes and counters
            merged.append({**run[0], "packet": data, "pos": 0, "to_process": len(data)})
        run.clear()
        size = 0

    for packet in queue:
        if packet["pos"] != 0 or not _joinable(packet):
            flush()
            merged.append(packet)
            continue
        length = len(packet["packet"])
        if run and size + length > MAX_JOINED:
            flush()
        run.append(packet)
        size += length
    flush()
    queue.clear()
    queue.extend(merged)


def coalesce_writes(client: aiomqtt.Client) -> None:
    """Make ``client``'s paho join its queued packets before each write (see the module)."""
    _paho_wire.before_each_write(_paho.paho_of(client), join_queued)


def no_filtered_callbacks(client: aiomqtt.Client) -> None:
    """Give ``client``'s paho an :class:`EmptyFirst` tree (it holds no callbacks yet)."""
    _paho_wire.no_filtered_callbacks(_paho.paho_of(client))


def quiet_debug_log(client: aiomqtt.Client) -> None:
    """Make ``client``'s paho skip its per-packet debug lines while nothing takes them."""
    _paho_wire.quiet_debug_log(_paho.paho_of(client))


@dataclass(slots=True)
class WireBytes:
    """Bytes a link wrote to (``sent``) and read from (``received``) its sockets."""

    sent: int = 0
    received: int = 0


def count_bytes(client: aiomqtt.Client, *counters: WireBytes) -> None:
    """Add every byte ``client``'s paho sends or receives on its socket to each of ``counters``.

    Call before the client connects (its CONNECT is counted too) and before anything else
    wraps paho's socket reads (a read buffer reads through the count).
    """
    paho = _paho.paho_of(client)
    send = _paho_wire.raw_send(paho)
    recv = _paho.raw_recv(paho)

    def sock_send(buf: bytes | bytearray) -> int:
        n = int(send(buf))
        for counter in counters:
            counter.sent += n
        return n

    def sock_recv(bufsize: int) -> bytes:
        data: bytes = recv(bufsize)
        for counter in counters:
            counter.received += len(data)
        return data

    _paho_wire.replace_socket_io(paho, sock_send, sock_recv)


class Sent:
    """One batch handed to paho: done once the broker acknowledged every message of it."""

    __slots__ = ("at", "left")

    def __init__(self, left: int, at: float) -> None:
        self.left = left
        self.at = at
        """``time.monotonic()`` when it was handed over."""

    @property
    def done(self) -> bool:
        """Whether every message of the batch was acknowledged (QoS 0: written)."""
        return self.left <= 0


class Publisher:
    """Publishes batches through a link client's paho directly, without a task and a future
    per message (what ``aiomqtt.Client.publish`` costs), and tells which batches are done.

    paho reports each acknowledged packet id to ``on_publish``; the batch holding it counts
    down, and ``on_done`` runs (in the event loop, from paho's read callback) when one is
    done. paho itself still holds at most ``max_inflight_messages`` in flight and queues the
    rest in order, so several batches may be handed over at once.
    """

    def __init__(self, client: aiomqtt.Client, on_done: Callable[[], None]) -> None:
        """Hook ``client``'s paho; call before it connects."""
        self._paho = _paho.paho_of(client)
        self._on_done = on_done
        self._by_mid: dict[int, Sent] = {}
        _paho_wire.wrap_on_publish(client, self._counting)

    def _counting(self, inner: _paho_wire.OnPublish | None) -> _paho_wire.OnPublish:
        """paho's ``on_publish``: count the batch holding ``mid`` down, then call ``inner``."""
        by_mid, on_done = self._by_mid, self._on_done

        def on_publish(c: Any, userdata: Any, mid: int, reason: Any, props: Any) -> None:
            sent = by_mid.pop(mid, None)
            if sent is not None:
                sent.left -= 1
                if sent.left == 0:
                    on_done()
            if inner is not None:
                inner(c, userdata, mid, reason, props)

        return on_publish

    def publish(self, batch: Sequence[tuple[str, bytes, int, bool]], now: float) -> Sent:
        """Hand ``(topic, payload, qos, retain)`` messages to paho, in order."""
        sent = Sent(len(batch), now)
        publish = self._paho.publish
        for topic, payload, qos, retain in batch:
            info = publish(topic, payload, qos=qos, retain=retain)
            if info.rc != MQTT_ERR_SUCCESS:
                raise MqttCodeError(info.rc, "Could not publish message")
            if info.is_published():
                sent.left -= 1
            else:
                self._by_mid[info.mid] = sent
        if sent.done:
            self._on_done()
        return sent
