"""Fewer system calls on a link's sockets: the MQTT packets paho has queued go out in one send.

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
"""

from __future__ import annotations

from collections import deque
from typing import Any

import aiomqtt
from paho.mqtt.client import DISCONNECT, PUBLISH

__all__ = ["MAX_JOINED", "coalesce_writes", "join_queued"]

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
