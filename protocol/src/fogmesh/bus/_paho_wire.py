"""The paho-mqtt and aiomqtt internals a bridge link's hot path relies on.

The broker's links (``fogmesh.broker.wire``, ``link_reader``, ``link_client``) count the bytes
on their sockets, join paho's queued packets into one write, publish and take arrivals through
paho without aiomqtt's futures and queue. paho's per-message objects, made lean process-wide,
are :mod:`fogmesh.bus._paho_lean`.
Written against paho-mqtt 2.2 and aiomqtt 2.5, as :mod:`fogmesh.bus._paho` (which has the
aiomqtt client's own internals: :func:`~fogmesh.bus._paho.paho_of` and the like). Each
function names what it relies on; :data:`RELIED_ON`, :data:`OUT_PACKET_KEYS` and
:data:`AIOMQTT_CALLBACKS` list it, and ``tests/bus/test_paho_internals.py`` fails, naming what
is gone, when an upgrade moves one.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as paho_client
from paho.mqtt.matcher import MQTTMatcher

from fogmesh.bus import _paho

if TYPE_CHECKING:
    import aiomqtt
    import paho.mqtt.client as mqtt

__all__ = [
    "AIOMQTT_CALLBACKS",
    "OUT_PACKET_KEYS",
    "RELIED_ON",
    "EmptyFirst",
    "OnPublish",
    "after_each_read",
    "before_each_write",
    "before_on_connect",
    "no_filtered_callbacks",
    "quiet_debug_log",
    "raw_send",
    "replace_on_message",
    "replace_socket_io",
    "wrap_on_publish",
    "write_in_pass",
]

RELIED_ON: dict[str, tuple[str, ...]] = {
    "aiomqtt.Client": ("_loop",),
    "paho.mqtt.client.Client": (
        "_sock_send",
        "_sock_recv",
        "_packet_write",
        "_out_packet",
        "_on_message_filtered",
        "_easy_log",
    ),
    "paho.mqtt.matcher.MQTTMatcher": ("_root",),
    "paho.mqtt.matcher.MQTTMatcher.Node": ("_children", "_content"),
}
"""The private attributes this module uses, by what carries them."""

OUT_PACKET_KEYS = ("command", "qos", "pos", "to_process", "packet")
"""The keys of a packet on paho's out queue (``_packet_queue`` builds them) the link's joined
writes read and set (``fogmesh.broker.wire.join_queued``)."""

AIOMQTT_CALLBACKS = (
    "on_connect",
    "on_message",
    "on_publish",
    "on_socket_register_write",
    "on_socket_unregister_write",
)
"""paho's callbacks aiomqtt 2.5 sets to its own methods when it builds a client: the link
chains before aiomqtt's ``on_connect`` (which completes the connect) and ``on_publish``,
replaces ``on_message`` (aiomqtt's queue then stays empty), and calls aiomqtt's socket-write
pair only when a write does not fit (:func:`write_in_pass`). aiomqtt's socket callback reads
through ``loop_read`` on the paho instance, which :func:`after_each_read` wraps."""


# -- socket calls and the out queue -----------------------------------------------------


def raw_send(paho: mqtt.Client) -> Callable[[bytes | bytearray], int]:
    """paho's current socket write (``_sock_send``), for a wrapper to call."""
    return paho._sock_send


def replace_socket_io(
    paho: mqtt.Client,
    send: Callable[[bytes | bytearray], int],
    recv: Callable[[int], bytes],
) -> None:
    """Make ``paho`` write through ``send`` and read through ``recv``.

    Instance attributes shadow paho's methods: its packet writer and reader call
    ``self._sock_send`` / ``self._sock_recv``. Read the current ones first with
    :func:`raw_send` and :func:`fogmesh.bus._paho.raw_recv`."""
    paho._sock_send = send  # type: ignore[method-assign,assignment]
    paho._sock_recv = recv  # type: ignore[method-assign,assignment]


def before_each_write(paho: mqtt.Client, prepare: Callable[[deque[Any]], None]) -> None:
    """Call ``prepare`` on paho's out queue (``_out_packet``, entries with
    :data:`OUT_PACKET_KEYS`) before each of its writes (``_packet_write``)."""
    write = paho._packet_write
    queue: deque[Any] = paho._out_packet

    def packet_write() -> Any:
        prepare(queue)
        return write()

    paho._packet_write = packet_write  # type: ignore[method-assign]


def write_in_pass(client: aiomqtt.Client) -> None:
    """Write what paho queues in one pass of the event loop, without watching the socket.

    aiomqtt 2.5 answers paho's "I have packets" (``on_socket_register_write``) with
    ``call_soon_threadsafe(add_writer)``: a wake-up byte through the loop's self-pipe, then
    two ``epoll_ctl`` calls (register and unregister) and a ``select`` before each write, a
    tenth of a link's CPU in a burst. Called on the loop's own thread it now schedules one
    ``loop_write`` with ``call_soon`` instead, which writes everything queued by then; only
    when the socket does not take it all (or the call comes from another thread: paho's
    connect runs in an executor) is aiomqtt's own writer registered, and it writes the rest
    when the socket is writable. A failed write ends the connection as aiomqtt's does."""
    paho = _paho.paho_of(client)
    loop = client._loop
    home = threading.get_ident()
    register: Any = paho.on_socket_register_write  # aiomqtt's callbacks, kept for the rest
    unregister: Any = paho.on_socket_unregister_write
    state = {"due": False, "watched": False}

    def flush() -> None:
        state["due"] = False
        try:
            paho.loop_write()
        except Exception as exc:  # noqa: BLE001 (as aiomqtt's own writer: the link is gone)
            gone = _paho.disconnected(client)
            if not gone.done():
                gone.set_exception(exc)
            return
        sock = paho.socket()
        if paho.want_write() and sock is not None and not state["watched"]:
            state["watched"] = True  # the socket's buffer is full: wait until it drains
            register(paho, None, sock)

    def on_register(c: Any, userdata: Any, sock: Any) -> None:
        if threading.get_ident() != home:
            state["watched"] = True
            register(c, userdata, sock)
        elif not state["due"]:
            state["due"] = True
            loop.call_soon(flush)

    def on_unregister(c: Any, userdata: Any, sock: Any) -> None:
        if state["watched"]:
            state["watched"] = False
            unregister(c, userdata, sock)

    paho.on_socket_register_write = on_register
    paho.on_socket_unregister_write = on_unregister


# -- callbacks and the read loop --------------------------------------------------------


def before_on_connect(client: aiomqtt.Client, note: Callable[[bool], None]) -> None:
    """Call ``note(session_present)`` on each CONNACK, then aiomqtt's own ``on_connect``."""
    paho = _paho.paho_of(client)
    answer: Any = paho.on_connect

    def on_connect(c: Any, userdata: Any, flags: Any, reason: Any, properties: Any = None) -> None:
        note(bool(flags.session_present))
        answer(c, userdata, flags, reason, properties)

    paho.on_connect = on_connect


OnPublish = Callable[[Any, Any, int, Any, Any], None]
"""paho 2.x's ``on_publish(client, userdata, mid, reason_code, properties)``."""


def wrap_on_publish(client: aiomqtt.Client, wrap: Callable[[OnPublish | None], OnPublish]) -> None:
    """Set paho's ``on_publish`` to ``wrap(aiomqtt's own)``; the callback ``wrap`` returns
    must call aiomqtt's (its ``publish`` waits on it). One call per acknowledged message: the
    wrapper is the caller's own callback, not a layer around it."""
    paho = _paho.paho_of(client)
    aiomqtts: Any = paho.on_publish  # paho types it as either API version's callback
    paho.on_publish = wrap(aiomqtts)


def replace_on_message(
    client: aiomqtt.Client, on_message: Callable[[Any, Any, mqtt.MQTTMessage], None]
) -> None:
    """Hand every message paho decodes to ``on_message(paho, userdata, message)`` (paho's
    callback, called directly) instead of aiomqtt's queue."""
    _paho.paho_of(client).on_message = on_message


_DEBUG = paho_client.MQTT_LOG_DEBUG


def quiet_debug_log(paho: mqtt.Client) -> None:
    """Make ``paho``'s debug lines cost nothing while nobody takes them.

    paho logs a line for every packet it sends or receives (``_easy_log``): with a logger set
    (aiomqtt sets its own) each goes through a level table and ``Logger.log``, which drops it,
    about 0.7 us a packet (0.26 us with this, in a micro-benchmark). A debug line now returns
    at once while there is no ``on_log`` callback and the logger (read each time: ``logger``
    may be set later) does not take DEBUG; everything else is paho's own ``_easy_log``."""
    easy_log = paho._easy_log

    def _easy_log(level: Any, fmt: str, *args: Any) -> None:
        if level is _DEBUG and paho.on_log is None:
            logger = paho.logger
            if logger is None or not logger.isEnabledFor(logging.DEBUG):
                return
        easy_log(level, fmt, *args)

    paho._easy_log = _easy_log  # type: ignore[method-assign]


def after_each_read(client: aiomqtt.Client, after: Callable[[], None]) -> None:
    """Run ``after`` when each of paho's ``loop_read`` calls ends (it returned or raised).

    Wraps the ``loop_read`` in use (``fogmesh.bus.drain_reads``'s, once it is set)."""
    paho = _paho.paho_of(client)
    read = paho.loop_read

    def loop_read(max_packets: int = 1) -> Any:
        try:
            return read(max_packets)
        finally:
            after()

    paho.loop_read = loop_read  # type: ignore[method-assign]


# -- the per-filter callback tree ----------------------------------------------------


class EmptyFirst(MQTTMatcher):
    """paho's filter tree; matching against an empty tree yields nothing without a walk."""

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]

    def iter_match(self, topic: str) -> Iterator[Any]:
        """paho's ``iter_match``, short-cut while no filter is stored."""
        root = self._root
        if not root._children and root._content is None:
            return iter(())
        found: Iterator[Any] = super().iter_match(topic)  # type: ignore[no-untyped-call]
        return found


def no_filtered_callbacks(paho: mqtt.Client) -> None:
    """Give ``paho`` an :class:`EmptyFirst` tree of per-filter callbacks
    (``_on_message_filtered``) while it holds none."""
    if not paho._on_message_filtered._root._children:
        paho._on_message_filtered = EmptyFirst()
