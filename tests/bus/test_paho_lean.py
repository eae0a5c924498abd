"""paho's per-message objects, made lean (``fogmesh.bus._paho_lean.lean_paho``), behave as
paho's own: reason codes, decoded PUBACKs, and the ``MQTTMessageInfo`` of a message published
or received, in isolation and through real brokers (amqtt speaks MQTT 3.1.1, Mosquitto 5)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import aiomqtt
import paho.mqtt._packet as paho_packet
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.exception import MalformedPacket
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from fogmesh.bus import _paho, _paho_lean, _paho_wire
from fogmesh.bus._paho_lean import LeanMessageInfo, LeanProperties, LeanReasonCode
from tests.support.brokers import BrokerProcess

V311, V5 = MQTTProtocolVersion.MQTTv311, MQTTProtocolVersion.MQTTv5
PAHOS = {
    (paho_packet, "Properties"): Properties,
    (paho_packet, "ReasonCode"): ReasonCode,
    (paho_packet, "decode_puback"): _paho_lean._PAHOS_DECODE_PUBACK,
    (mqtt, "MQTTMessageInfo"): LeanMessageInfo.__bases__[0],
}


@pytest.fixture(autouse=True)
def _pahos_own() -> Iterator[None]:
    """Each test starts with paho's own classes installed and leaves them so."""
    for (module, name), own in PAHOS.items():
        setattr(module, name, own)
    yield
    for (module, name), own in PAHOS.items():
        setattr(module, name, own)


def _codes() -> Iterator[tuple[int, int, str]]:
    for code, names in ReasonCode.names.items():
        for name, packet_types in names.items():
            for packet_type in packet_types:
                yield packet_type, code, name


def _same_code(lean: ReasonCode, plain: ReasonCode) -> None:
    assert isinstance(lean, LeanReasonCode)
    assert (lean.value, lean.packetType) == (plain.value, plain.packetType)
    assert (lean.getName(), str(lean), repr(lean)) == (plain.getName(), str(plain), repr(plain))
    assert lean == plain
    assert lean == plain.value
    assert lean == str(plain)
    assert not lean < plain
    assert dict(lean.names) == plain.names


def test_the_own_classes_are_pahos() -> None:
    assert PAHOS[(mqtt, "MQTTMessageInfo")] is mqtt.MQTTMessageInfo
    assert not isinstance(mqtt.MQTTMessageInfo(1), LeanMessageInfo)


def test_lean_reason_codes_equal_pahos() -> None:
    for _ in range(2):  # the first round looks each pair up through paho, the second remembers
        for packet_type, code, name in _codes():
            by_code = ReasonCode(packet_type, identifier=code)
            _same_code(LeanReasonCode(packet_type, identifier=code), by_code)
            _same_code(LeanReasonCode(packet_type, name), ReasonCode(packet_type, name))
            lean = LeanReasonCode(packet_type, identifier=code)
            plain = ReasonCode(packet_type, identifier=code)
            lean.value = plain.value = -1  # what unpack reads is the buffer's
            assert lean.unpack(bytes([code])) == plain.unpack(bytes([code])) == 1
            _same_code(lean, plain)
        for packet_type in (PacketTypes.PUBACK, PacketTypes.DISCONNECT, PacketTypes.CONNACK):
            _same_code(LeanReasonCode(packet_type), ReasonCode(packet_type))
    assert LeanReasonCode(PacketTypes.DISCONNECT).getName() == "Normal disconnection"
    assert LeanReasonCode(PacketTypes.PUBACK) < LeanReasonCode(PacketTypes.PUBACK, identifier=16)


def test_lean_reason_codes_refuse_what_paho_refuses() -> None:
    for _ in range(2):
        with pytest.raises(KeyError):
            ReasonCode(PacketTypes.PUBACK, "Banned")
        with pytest.raises(KeyError):
            LeanReasonCode(PacketTypes.PUBACK, "Banned")
        with pytest.raises(ValueError, match="Expected exactly one name"):
            ReasonCode(PacketTypes.PUBACK, identifier=4)
        with pytest.raises(ValueError, match="Expected exactly one name"):
            LeanReasonCode(PacketTypes.PUBACK, identifier=4)
        with pytest.raises(KeyError):
            LeanReasonCode(PacketTypes.PUBACK, identifier=3)
        with pytest.raises(ValueError, match="Expected exactly one name"):
            LeanReasonCode(PacketTypes.PUBACK).unpack(b"\x8c")
        with pytest.raises(TypeError):  # the shared table is read-only
            LeanReasonCode(PacketTypes.PUBACK).names[200] = {}  # type: ignore[index]


def _props(packet_type: int, **values: Any) -> bytes:
    props: Any = Properties(packet_type)  # type: ignore[no-untyped-call]
    for name, value in values.items():
        setattr(props, name, value)
    packed: bytes = props.pack()
    return packed


PUBACKS = [
    (V311, b"\x00\x05"),
    (V311, b"\xff\xfe"),
    (V5, b"\x00\x05"),
    (V5, b"\x01\x00\x10"),
    (V5, b"\x00\x07\x00\x00"),
    (V5, b"\x00\x07\x87" + _props(PacketTypes.PUBACK, ReasonString="no", UserProperty=("a", "b"))),
]


def test_lean_pubacks_decode_as_pahos() -> None:
    plain = [paho_packet.decode_puback(0x40, p, v) for v, p in PUBACKS]
    _paho_lean.lean_paho()
    assert paho_packet.decode_puback is _paho_lean.decode_puback
    for _ in range(2):
        lean = [paho_packet.decode_puback(0x40, p, v) for v, p in PUBACKS]
        for a, b in zip(plain, lean, strict=True):
            assert isinstance(b, paho_packet.PubackPacket)
            assert a.mid == b.mid
            _same_code(b.reason, a.reason)
            assert isinstance(b.properties, LeanProperties)
            a_props: Any = a.properties
            b_props: Any = b.properties
            assert a_props.json() == b_props.json()
            assert a_props.isEmpty() == b_props.isEmpty()
    assert [p.mid for p in lean] == [5, 65534, 5, 256, 7, 7]
    props: Any = lean[-1].properties
    assert (lean[-1].reason.getName(), props.ReasonString) == ("Not authorized", "no")
    assert lean[0].reason is not lean[2].reason  # fresh objects, as paho's
    assert lean[0].properties is not lean[2].properties
    for version, packet in ((V311, b"\x00"), (V311, b"\x00\x05\x00"), (V5, b"\x00")):
        with pytest.raises(MalformedPacket):
            _paho_lean._PAHOS_DECODE_PUBACK(0x40, packet, version)
        with pytest.raises(MalformedPacket):
            paho_packet.decode_puback(0x40, packet, version)


def test_lean_message_info_reads_as_pahos() -> None:
    for rc in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
        lean, plain = LeanMessageInfo(9), mqtt.MQTTMessageInfo(9)
        lean.rc = plain.rc = rc
        assert isinstance(lean, mqtt.MQTTMessageInfo)
        assert (lean.mid, lean.rc, str(lean)) == (plain.mid, plain.rc, str(plain))
        assert (lean[0], lean[1]) == (plain[0], plain[1])
        assert list(lean) == list(plain) == [rc, 9]
        rc_, mid = lean
        assert (rc_, mid) == (rc, 9)
        with pytest.raises(IndexError):
            lean[2]
    lean = LeanMessageInfo(1)
    assert not lean.is_published()
    start = time.monotonic()
    lean.wait_for_publish(0.2)  # not published: returns at the timeout, as paho's
    assert 0.15 < time.monotonic() - start < 5
    assert not lean.is_published()
    lean._set_as_published()
    lean.wait_for_publish()
    assert lean.is_published()

    for rc, error in (
        (MQTTErrorCode.MQTT_ERR_QUEUE_SIZE, ValueError),
        (MQTTErrorCode.MQTT_ERR_NO_CONN, RuntimeError),
    ):
        lean, plain = LeanMessageInfo(2), mqtt.MQTTMessageInfo(2)
        lean.rc = plain.rc = rc
        for info in (lean, plain):
            with pytest.raises(error):
                info.is_published()
            with pytest.raises(error):
                info.wait_for_publish(0.1)
    lean = LeanMessageInfo(3)
    lean.rc = MQTTErrorCode.MQTT_ERR_AGAIN
    assert not lean.is_published()


def test_lean_message_info_wakes_every_waiter() -> None:
    """A waiter on another thread (no timeout: only the notification wakes it) always wakes,
    however its wait and the mark interleave."""
    for _ in range(200):
        info = LeanMessageInfo(1)
        woken: list[bool] = []

        def wait(info: LeanMessageInfo = info, woken: list[bool] = woken) -> None:
            info.wait_for_publish()
            woken.append(info.is_published())

        waiters = [threading.Thread(target=wait, daemon=True) for _ in range(2)]
        for thread in waiters:
            thread.start()
        info._set_as_published()
        for thread in waiters:
            thread.join(10)
        assert woken == [True, True]


def _threaded(broker: BrokerProcess, protocol: MQTTProtocolVersion, name: str) -> mqtt.Client:
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"lean-{name}-{uuid.uuid4().hex[:8]}",
        protocol=protocol,
    )
    client.username_pw_set("t", "t")
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    return client


@pytest.mark.parametrize("kind_protocol", [("amqtt", V311), ("mosquitto", V311), ("mosquitto", V5)])
def test_a_real_publish_is_published_as_with_pahos(
    kind_protocol: tuple[str, MQTTProtocolVersion], tmp_path: Any
) -> None:
    """paho's own threaded client, lean: its QoS 0 and 1 publishes are published (waited for
    and polled), on_publish gets the reason codes and properties paho's give, every message
    arrives with a lean info."""
    kind, protocol = kind_protocol
    _paho_lean.lean_paho()
    broker = BrokerProcess(kind, tmp_path / kind).start()
    arrived: list[mqtt.MQTTMessage] = []
    acked: list[tuple[int, Any, Any]] = []
    subscribed = threading.Event()
    try:
        sub = _threaded(broker, protocol, "sub")
        sub.on_message = lambda _c, _u, message: arrived.append(message)
        sub.on_subscribe = lambda *_: subscribed.set()
        sub.subscribe("lean/#", qos=1)
        assert subscribed.wait(10)
        pub = _threaded(broker, protocol, "pub")
        pub.on_publish = lambda _c, _u, mid, reason, props: acked.append((mid, reason, props))
        deadline = time.monotonic() + 10
        while not pub.is_connected() and time.monotonic() < deadline:
            time.sleep(0.01)
        infos = [pub.publish(f"lean/{i}", b"x%d" % i, qos=i % 2) for i in range(40)]
        for info in infos[::2]:
            info.wait_for_publish(10)
        while not all(i.is_published() for i in infos) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert all(isinstance(i, LeanMessageInfo) for i in infos)
        assert all(i.is_published() for i in infos)
        assert [tuple(i) for i in infos] == [(MQTTErrorCode.MQTT_ERR_SUCCESS, i.mid) for i in infos]
        while len(arrived) < 40 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sorted(m.payload for m in arrived) == sorted(b"x%d" % i for i in range(40))
        assert all(isinstance(m.info, LeanMessageInfo) for m in arrived)
        qos1 = [(mid, reason, props) for mid, reason, props in acked if mid % 2 == 0]
        assert len(acked) == 40
        assert qos1
        for _mid, reason, props in acked:
            assert reason == ReasonCode(PacketTypes.PUBACK)
            assert str(reason) == "Success"
            assert props.isEmpty()
        for client in (pub, sub):
            client.disconnect()
            client.loop_stop()
    finally:
        broker.stop()


async def test_aiomqtt_publishes_through_the_lean_objects(broker: BrokerProcess) -> None:
    """aiomqtt's own publish (is_published, then its on_publish) over each broker, with the
    lean objects and the quiet debug log."""
    _paho_lean.lean_paho()
    client = aiomqtt.Client(
        "127.0.0.1",
        broker.port,
        username="t",
        password="t",
        identifier=f"lean-{uuid.uuid4().hex[:8]}",
    )
    _paho_wire.quiet_debug_log(_paho.paho_of(client))
    async with client:
        await client.subscribe("lean/a", qos=1)
        for qos in (0, 1, 1):
            await client.publish("lean/a", b"m%d" % qos, qos=qos)
        got = []
        async for message in client.messages:
            got.append(message.payload)
            if len(got) == 3:
                break
    assert sorted(got) == [b"m0", b"m1", b"m1"]


def test_the_quiet_debug_log_still_logs_what_is_taken(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="lean-log")  # never connected
    logger = logging.getLogger("lean-test-paho")
    client.enable_logger(logger)
    _paho_wire.quiet_debug_log(client)
    lines: list[str] = []
    logger.setLevel(logging.INFO)
    client._easy_log(mqtt.MQTT_LOG_DEBUG, "dropped %d", 1)
    client._easy_log(mqtt.MQTT_LOG_ERR, "kept %d", 2)
    logger.setLevel(logging.DEBUG)  # taken again at once
    with caplog.at_level(logging.DEBUG, logger="lean-test-paho"):
        client._easy_log(mqtt.MQTT_LOG_DEBUG, "kept %d", 3)
    logger.setLevel(logging.INFO)
    client.on_log = lambda _c, _u, _level, line: lines.append(line)
    client._easy_log(mqtt.MQTT_LOG_DEBUG, "to on_log %d", 4)
    assert "kept 3" in caplog.text
    assert "dropped" not in caplog.text
    assert lines == ["to on_log 4"]
