"""The WAN bench's relay accounting: the bytes the site's link sends and receives, split into
MQTT packets and charged to the ``fm/v1`` tree each PUBLISH names (``mqtt`` for pings, acks,
connects), through the counting relay of ``tests/support/relay.py``."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from tests.support.relay import CountingRelay

__all__ = ["MqttSplitter", "Relay", "Tally"]


@dataclass
class Tally:
    """Bytes by tree of the PUBLISH packets that carried them (the relay counts each way)."""

    trees: dict[str, int] = field(default_factory=dict)
    packets: dict[str, int] = field(default_factory=dict)
    trace: Any = None
    """A text file each packet is written to (``--keep``), or None."""
    hellos: int = 0
    """Hellos that crossed: an agent's (re)connects."""
    startup_at: float = 0.0
    """When the last event or actual state crossed (a start's burst; monotonic)."""

    def snapshot(self) -> dict[str, Any]:
        return {
            "trees": dict(self.trees),
            "packets": dict(self.packets),
            "hellos": self.hellos,
        }


class MqttSplitter:
    """Splits one direction's byte stream into MQTT packets and charges each to a tree."""

    def __init__(self, tally: Tally, way: str) -> None:
        self.tally, self.way, self.buf = tally, way, bytearray()

    def feed(self, data: bytes) -> None:
        self.buf += data
        while True:
            size = self._packet_size()
            if size is None or len(self.buf) < size:
                return
            packet, self.buf = bytes(self.buf[:size]), self.buf[size:]
            self._charge(packet)

    def _packet_size(self) -> int | None:
        buf = self.buf
        length, mult = 0, 1
        for i in range(1, min(len(buf), 5)):
            length += (buf[i] & 0x7F) * mult
            if not buf[i] & 0x80:
                return i + 1 + length
            mult *= 128
        return None

    def _charge(self, packet: bytes) -> None:
        kind = packet[0] >> 4
        tree, topic_name = "mqtt", ""
        if kind == 3:  # PUBLISH: fixed header, then the topic's length and the topic
            i = 1
            while packet[i] & 0x80:
                i += 1
            i += 1
            n = int.from_bytes(packet[i : i + 2], "big")
            topic_name = packet[i + 2 : i + 2 + n].decode(errors="replace")
            topic = topic_name.split("/")
            tree = topic[2] if len(topic) > 2 and topic[:2] == ["fm", "v1"] else topic[0]
            if tree == "events" or topic[-1] == "actual":
                self.tally.startup_at = time.monotonic()
            if topic[-1] == "hello":
                self.tally.hellos += 1
        if self.tally.trace is not None:
            name = topic_name if kind == 3 else f"type{kind}"
            self.tally.trace.write(f"{time.monotonic():.3f} {self.way} {len(packet)} {name}\n")
        key = f"{self.way}:{tree}"
        self.tally.trees[key] = self.tally.trees.get(key, 0) + len(packet)
        self.tally.packets[key] = self.tally.packets.get(key, 0) + 1


class Relay:
    """The counting relay (``tests/support/relay.py``) from its port to the cloud broker, each
    direction's stream split into MQTT packets into one :class:`Tally`."""

    def __init__(self, target: int, port: int) -> None:
        self.tally = Tally()
        self.counting = CountingRelay(
            target, port=port, watch=lambda way: MqttSplitter(self.tally, way).feed
        )
        self.port = self.counting.port

    def snapshot(self) -> dict[str, Any]:
        return {**self.tally.snapshot(), "up": self.counting.up, "down": self.counting.down}

    async def start(self) -> None:
        await self.counting.start()

    async def close(self) -> None:
        await self.counting.close()
