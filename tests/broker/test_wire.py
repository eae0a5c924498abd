"""fogmesh.broker.wire: a link's queued MQTT packets are joined into one write, in order.

Pure queue manipulation (paho's out-packet dicts); end to end it runs in every link test.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from paho.mqtt.client import DISCONNECT, PUBACK, PUBLISH

from fogmesh.broker.wire import MAX_JOINED, join_queued


def packet(command: int, data: bytes, *, qos: int = 1, pos: int = 0) -> dict[str, Any]:
    """A paho out-packet as ``_packet_queue`` builds it."""
    return {
        "command": command,
        "mid": 1,
        "qos": qos,
        "pos": pos,
        "to_process": len(data) - pos,
        "packet": bytearray(data),
        "info": None,
    }


def test_a_run_of_acks_and_qos1_publishes_becomes_one_packet_with_the_same_bytes() -> None:
    queue = deque([packet(PUBACK, b"a1"), packet(PUBLISH | 2, b"p1"), packet(PUBACK, b"a2")])
    join_queued(queue)
    assert len(queue) == 1
    assert queue[0]["packet"] == b"a1p1a2"
    assert queue[0]["to_process"] == 6
    assert queue[0]["pos"] == 0


def test_qos0_publish_disconnect_and_a_started_packet_stay_on_their_own_in_order() -> None:
    started = packet(PUBACK, b"xxhalf", pos=2)
    queue = deque(
        [
            started,
            packet(PUBACK, b"a1"),
            packet(PUBACK, b"a2"),
            packet(PUBLISH, b"q0", qos=0),
            packet(PUBACK, b"a3"),
            packet(DISCONNECT, b"dc", qos=0),
        ]
    )
    join_queued(queue)
    assert [bytes(p["packet"]) for p in queue] == [b"xxhalf", b"a1a2", b"q0", b"a3", b"dc"]
    assert queue[0] is started
    assert b"".join(bytes(p["packet"][p["pos"] :]) for p in queue) == b"half" + b"a1a2q0a3dc"


def test_joined_buffers_stay_under_the_cap() -> None:
    big = b"x" * (MAX_JOINED // 2 + 1)
    queue = deque([packet(PUBLISH | 2, big) for _ in range(3)])
    join_queued(queue)
    assert len(queue) == 3  # no two of them fit one buffer
    queue = deque([packet(PUBACK, b"a" * 4) for _ in range(1000)])
    join_queued(queue)
    assert len(queue) == 1
    assert len(queue[0]["packet"]) == 4000
