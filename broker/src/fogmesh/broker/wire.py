"""Fewer system calls on the mesh's sockets: packets written in one loop turn go out in one send.

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

The embedded broker (amqtt) likewise wrote every packet to its transport at once, one ``send()``
each (21% of the site broker's profile). :func:`coalesce_broker_writes` makes its stream adapter
collect what one loop turn writes and hand it to the transport in one piece at the end of that
turn (``call_soon``); ``drain()`` hands over first once 64 KB wait, so flow control still holds,
and ``close()`` hands over what waits before closing.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

import aiomqtt
from amqtt.adapters import StreamWriterAdapter
from paho.mqtt.client import DISCONNECT, PUBLISH

__all__ = ["MAX_JOINED", "coalesce_broker_writes", "coalesce_writes", "join_queued"]

MAX_JOINED = 256 * 1024
"""Bytes joined into one buffer at most (a socket send buffer's worth on Linux)."""


def _joinable(packet: dict[str, Any]) -> bool:
    command = int(packet["command"]) & 0xF0
    if command == DISCONNECT:
        return False
    return not (command == PUBLISH and packet["qos"] == 0)


def join_queued(queue: deque[dict[str, Any]]) -> None:
    """Merge runs of joinable, unstarted packets in paho's out queue, in place and in order."""
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
    paho: Any = client._client  # paho's private queue and writer: pinned to paho-mqtt 2.x
    write = paho._packet_write

    def packet_write() -> Any:
        join_queued(paho._out_packet)
        return write()

    paho._packet_write = packet_write


_DRAIN_AT = 64 * 1024
"""Bytes waiting in the broker's adapter above which ``drain()`` hands them over first."""
_plain_close = StreamWriterAdapter.close


class _Pending:
    """What one adapter was given this loop turn and has not handed to its transport yet."""

    __slots__ = ("chunks", "size")

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.size = 0


def _pending(adapter: StreamWriterAdapter) -> _Pending:
    waiting: _Pending | None = adapter.__dict__.get("_fm_pending")
    if waiting is None:
        waiting = adapter.__dict__["_fm_pending"] = _Pending()
    return waiting


def _hand_over(adapter: StreamWriterAdapter) -> None:
    waiting = _pending(adapter)
    if waiting.chunks:
        data = b"".join(waiting.chunks)
        waiting.chunks.clear()
        waiting.size = 0
        adapter._writer.write(data)


def _write(self: StreamWriterAdapter, data: bytes) -> None:
    if self.is_closed:
        return
    waiting = _pending(self)
    waiting.chunks.append(bytes(data))
    waiting.size += len(data)
    if len(waiting.chunks) == 1:
        asyncio.get_running_loop().call_soon(_hand_over, self)


async def _drain(self: StreamWriterAdapter) -> None:
    if self.is_closed:
        return
    if _pending(self).size >= _DRAIN_AT:
        _hand_over(self)
    await self._writer.drain()


async def _close(self: StreamWriterAdapter) -> None:
    if not self.is_closed:
        _hand_over(self)
    await _plain_close(self)


def coalesce_broker_writes() -> None:
    """Make amqtt's stream adapter hand one loop turn's packets over at once (see the module)."""
    adapter: Any = StreamWriterAdapter
    adapter.write = _write
    adapter.drain = _drain
    adapter.close = _close
