"""The link's hot-path shortcuts keep paho's behaviour (docs/mesh.md, bench/mesh.py)."""

from __future__ import annotations

from typing import Any

import paho.mqtt._packet as paho_packet
import pytest
from paho.mqtt.enums import MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from fogmesh.broker.link import RECEIVE_MAXIMUM
from fogmesh.broker.wire import LeanProperties, lean_properties

V5 = MQTTProtocolVersion.MQTTv5


def _publish(props: bytes, payload: bytes = b"hello") -> bytes:
    """A QoS 1 PUBLISH's variable header and payload: topic b/t, packet id 7."""
    return b"\x00\x03b/t\x00\x07" + props + payload


@pytest.fixture(autouse=True)
def _restore_paho() -> object:
    original = paho_packet.Properties  # type: ignore[attr-defined]
    yield None
    paho_packet.Properties = original  # type: ignore[attr-defined]


def test_lean_properties_decode_like_paho() -> None:
    full = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    full.UserProperty = ("a", "b")
    full.MessageExpiryInterval = 5
    packets = [_publish(full.pack()), _publish(b"\x00"), _publish(b"\x00", b"")]  # type: ignore[no-untyped-call]
    plain = [paho_packet.decode_publish(0x32, p, V5) for p in packets]
    lean_properties()
    lean = [paho_packet.decode_publish(0x32, p, V5) for p in packets]
    for a, b in zip(plain, lean, strict=True):
        assert isinstance(b.properties, LeanProperties)
        assert (a.topic, a.mid, a.payload, a.qos) == (b.topic, b.mid, b.payload, b.qos)
        assert a.properties is not None
        assert b.properties is not None
        lean_props: Any = b.properties
        plain_props: Any = a.properties
        assert plain_props.json() == lean_props.json()
    first: Any = lean[0].properties
    assert first.UserProperty == [("a", "b")]
    empty: Any = lean[1].properties
    assert empty.isEmpty()


def test_lean_properties_are_separate_objects() -> None:
    """The tables are shared, the properties set on one object are its own."""
    one, two = LeanProperties(PacketTypes.PUBLISH), LeanProperties(PacketTypes.PUBLISH)
    one.ContentType = "x"
    assert not hasattr(two, "ContentType")
    with pytest.raises(Exception, match="Property name"):
        one.NoSuchThing = 1
    props: Any
    mid, _reason, props = paho_packet._decode_mid_reason_prop(PacketTypes.PUBACK, b"\x00\x05", V5)
    assert mid == 5
    assert props.isEmpty()


def test_receive_maximum_fits_mqtt() -> None:
    """Sent in CONNECT: MQTT 5 allows 1-65535."""
    assert 20 < RECEIVE_MAXIMUM <= 65535


def test_empty_first_matches_like_paho() -> None:
    from paho.mqtt.matcher import MQTTMatcher

    from fogmesh.broker.wire import EmptyFirst

    lean: Any = EmptyFirst()
    plain: Any = MQTTMatcher()  # type: ignore[no-untyped-call]
    for topic in ("b/t", "$SYS/x", "a"):
        assert list(lean.iter_match(topic)) == list(plain.iter_match(topic)) == []
    for flt in ("b/#", "+/t", "#"):
        lean[flt], plain[flt] = flt, flt
    for topic in ("b/t", "$SYS/x", "a", "c/t"):
        assert sorted(lean.iter_match(topic)) == sorted(plain.iter_match(topic))
    assert sorted(lean.iter_match("b/t")) == ["#", "+/t", "b/#"]
