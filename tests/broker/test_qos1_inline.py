"""QoS 1 through the embedded broker handled in the pass that read it (fogmesh.broker.qos1_inline,
fogmesh.broker.outflight), seen on the wire of a real broker process.

A raw socket writes a whole burst of PUBLISHes in one ``send`` (the broker reads them in one
pass): every one is acknowledged, in the order sent, and reaches a persistent subscriber in
order. A subscriber that never acknowledges keeps its messages in flight: after a reconnect
they come again, DUP set and in order, before anything published later; once acknowledged,
they are never sent again.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support.mesh import MeshProcess, start_alone
from tests.support.mesh_file import PASSWORDS

N = 300
USER = "svc"


def _length(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = n >> 7, n & 0x7F
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _text(s: str) -> bytes:
    return struct.pack("!H", len(s.encode())) + s.encode()


def _packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + _length(len(body)) + body


def connect(ident: str, *, clean: bool) -> bytes:
    flags = 0x80 | 0x40 | (0x02 if clean else 0)  # username, password, clean session
    body = _text("MQTT") + bytes([4, flags]) + struct.pack("!H", 60)
    return _packet(0x10, body + _text(ident) + _text(USER) + _text(PASSWORDS[USER]))


def publish(topic: str, payload: bytes, packet_id: int) -> bytes:
    return _packet(0x32, _text(topic) + struct.pack("!H", packet_id) + payload)


def subscribe(topic_filter: str, packet_id: int) -> bytes:
    return _packet(0x82, struct.pack("!H", packet_id) + _text(topic_filter) + b"\x01")


def puback(packet_id: int) -> bytes:
    return _packet(0x40, struct.pack("!H", packet_id))


@dataclass
class Packet:
    first: int
    body: bytes

    @property
    def kind(self) -> int:
        return self.first & 0xF0

    @property
    def dup(self) -> bool:
        return bool(self.first & 0x08)

    def publish(self) -> tuple[int, bytes]:
        """A QoS 1 PUBLISH's packet id and payload."""
        (n,) = struct.unpack("!H", self.body[:2])
        (packet_id,) = struct.unpack("!H", self.body[2 + n : 4 + n])
        return packet_id, self.body[4 + n :]


class Wire:
    """A raw MQTT 3.1.1 connection to the broker."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int, ident: str, *, clean: bool) -> Wire:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        wire = cls(reader, writer)
        await wire.send(connect(ident, clean=clean))
        connack = await wire.read()
        assert connack.kind == 0x20, connack
        assert connack.body[1] == 0, connack
        return wire

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def read(self, timeout: float = 20.0) -> Packet:
        async with asyncio.timeout(timeout):
            first = (await self.reader.readexactly(1))[0]
            size, shift = 0, 0
            while True:
                digit = (await self.reader.readexactly(1))[0]
                size |= (digit & 0x7F) << shift
                shift += 7
                if not digit & 0x80:
                    break
            return Packet(first, await self.reader.readexactly(size))

    async def publishes(self, n: int) -> list[Packet]:
        """The next ``n`` PUBLISH packets (anything else between them is skipped)."""
        got: list[Packet] = []
        while len(got) < n:
            packet = await self.read()
            if packet.kind == 0x30:
                got.append(packet)
        return got

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


def _ids(start: int, n: int) -> Iterator[int]:
    return iter(range(start, start + n))


async def _subscribed(port: int, ident: str, topic_filter: str) -> Wire:
    wire = await Wire.open(port, ident, clean=False)
    await wire.send(subscribe(topic_filter, 1))
    suback = await wire.read()
    assert suback.kind == 0x90, suback
    assert suback.body[-1] == 1, suback
    return wire


async def test_a_burst_read_in_one_pass_is_acknowledged_and_delivered_in_order(
    tmp_path: Path, procs: list[MeshProcess]
) -> None:
    port = start_alone(tmp_path, procs)[1]
    sub = await _subscribed(port, "svc-inline-sub", "tele/inline/#")
    pub = await Wire.open(port, "svc-inline-pub", clean=True)
    # the whole burst in one send: the broker's read loop finds it all buffered
    await pub.send(b"".join(publish("tele/inline/x", f"m-{i}".encode(), i + 1) for i in range(N)))
    acks: list[int] = []
    while len(acks) < N:
        packet = await pub.read()
        assert packet.kind == 0x40, packet
        acks.append(struct.unpack("!H", packet.body[:2])[0])
    assert acks == list(range(1, N + 1)), "PUBACKs in the order of their PUBLISHes"
    got = await sub.publishes(N)
    assert [p.publish()[1] for p in got] == [f"m-{i}".encode() for i in range(N)]
    assert not any(p.dup for p in got)
    await sub.send(b"".join(puback(p.publish()[0]) for p in got))
    await pub.close()
    await sub.close()


async def test_unacknowledged_messages_come_again_in_order_before_later_ones(
    tmp_path: Path, procs: list[MeshProcess]
) -> None:
    port = start_alone(tmp_path, procs)[1]
    ident = "svc-inline-slow"
    sub = await _subscribed(port, ident, "tele/slow/#")
    pub = await Wire.open(port, "svc-inline-pub2", clean=True)
    await pub.send(b"".join(publish("tele/slow/x", f"a-{i}".encode(), i + 1) for i in range(N)))
    first = await sub.publishes(N)  # read, never acknowledged
    assert [p.publish()[1] for p in first] == [f"a-{i}".encode() for i in range(N)]
    await sub.close()
    await asyncio.sleep(0.5)
    # published while the subscriber is away: queued for its session, after those in flight
    await pub.send(b"".join(publish("tele/slow/x", f"b-{i}".encode(), i + 1) for i in range(50)))
    acked = 0
    while acked < 50:
        acked += (await pub.read()).kind == 0x40
    sub = await Wire.open(port, ident, clean=False)
    again = await sub.publishes(N + 50)
    payloads = [p.publish()[1] for p in again]
    want = [f"a-{i}".encode() for i in range(N)] + [f"b-{i}".encode() for i in range(50)]
    wrong = next((i for i, (a, b) in enumerate(zip(payloads, want, strict=True)) if a != b), None)
    seen = [(p.publish()[1], p.dup) for p in again]
    assert wrong is None, (
        f"resent first, in order, then the queued: at {wrong}: {seen[wrong or 0 :][:8]}"
    )
    assert all(p.dup for p in again[:N]), "a resend carries DUP"
    assert not any(p.dup for p in again[N:])
    await sub.send(b"".join(puback(p.publish()[0]) for p in again))
    await asyncio.sleep(0.5)
    await sub.close()
    # everything acknowledged: a reconnect brings nothing again
    sub = await Wire.open(port, ident, clean=False)
    await pub.send(publish("tele/slow/x", b"c-0", 1))
    (packet,) = await sub.publishes(1)
    assert packet.publish()[1] == b"c-0"
    assert not packet.dup
    await sub.send(puback(packet.publish()[0]))
    await sub.close()
    await pub.close()
