"""The paho-mqtt and aiomqtt internals the bus and the broker's links rely on are there
(``fogmesh.bus._paho``, ``fogmesh.bus._paho_wire``).

The bus reaches past both libraries' public API in a few places (manual PUBACKs written in one
batch, the half-keepalive pings, the read buffer, the bounded disconnect), and a bridge link in
a few more (socket byte counts, joined writes, its own publisher and reader, the decoding
shortcuts). An upgrade that drops or reshapes one of those internals must fail here, naming it,
not in a fleet. The clients below are built but never connected: what is checked is their
shape, not a broker's behaviour (the other tests here and in tests/broker run that against real
brokers).
"""

from __future__ import annotations

import asyncio
import inspect
import re
from importlib.metadata import version
from pathlib import Path
from typing import Any

import aiomqtt
import paho.mqtt._packet as paho_packet
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.matcher import MQTTMatcher
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

import fogmesh.broker
from fogmesh.bus import _paho, _paho_lean, _paho_wire
from fogmesh.bus._paho_lean import LeanMessageInfo, LeanProperties, LeanReasonCode

BUS = Path(_paho.__file__).parent
BROKER = Path(fogmesh.broker.__file__).parent
ADAPTERS = {
    "_paho.py": _paho.RELIED_ON,
    "_paho_wire.py": _paho_wire.RELIED_ON,
    "_paho_lean.py": _paho_lean.RELIED_ON,
}
PINS = f"paho-mqtt {version('paho-mqtt')}, aiomqtt {version('aiomqtt')}"
_PAHOS_MESSAGE_INFO: type[mqtt.MQTTMessageInfo] = LeanMessageInfo.__bases__[0]  # paho's own

# How the bus calls the methods it relies on: their parameters after ``self``.
SIGNATURES = {
    "_packet_queue": ("command", "packet", "mid", "qos"),
    "_sock_recv": ("bufsize",),
    "_packet_read": (),
    "_loop_rc_handle": ("rc",),
    "_send_pingreq": (),
    "_sock_close": (),
    "loop_read": ("max_packets",),
    "_sock_send": ("buf",),
    "_packet_write": (),
}


async def test_every_private_attribute_the_bus_uses_exists() -> None:
    client = aiomqtt.Client("127.0.0.1", 1, identifier="internals")  # never connected
    paho = _paho.paho_of(client)
    instances: dict[str, object] = {"aiomqtt.Client": client, "paho.mqtt.client.Client": paho}
    missing = [
        f"{owner}.{name}"
        for owner, names in _paho.RELIED_ON.items()
        for name in names
        if not hasattr(instances[owner], name)
    ]
    assert not missing, f"{PINS} lacks what fogmesh/bus/_paho.py relies on: {missing}"

    assert isinstance(paho, mqtt.Client), PINS
    assert isinstance(_paho.incoming(client), asyncio.Queue), PINS
    assert isinstance(_paho.disconnected(client), asyncio.Future), PINS
    assert isinstance(paho._ping_t, int | float), PINS
    assert hasattr(paho._msgtime_mutex, "__enter__"), PINS
    assert _paho.socket_of(paho) is None, PINS  # not connected yet
    assert not _paho.is_connected(client), PINS


async def test_every_private_attribute_the_links_use_exists() -> None:
    client = aiomqtt.Client("127.0.0.1", 1, identifier="internals")  # never connected
    matcher: Any = MQTTMatcher()  # type: ignore[no-untyped-call]
    instances: dict[str, object] = {
        "aiomqtt.Client": client,
        "paho.mqtt.client.Client": _paho.paho_of(client),
        "paho.mqtt.matcher.MQTTMatcher": matcher,
        "paho.mqtt.matcher.MQTTMatcher.Node": matcher._root,
        "paho.mqtt._packet": paho_packet,
        "paho.mqtt.client.MQTTMessageInfo": _PAHOS_MESSAGE_INFO(1),
        "paho.mqtt.client": mqtt,
    }
    missing = [
        f"{owner}.{name}"
        for relied in (_paho_wire.RELIED_ON, _paho_lean.RELIED_ON)
        for owner, names in relied.items()
        for name in names
        if not hasattr(instances[owner], name)
    ]
    assert not missing, (
        f"{PINS} lacks what fogmesh/bus/_paho_wire.py or _paho_lean.py relies on: {missing}"
    )
    assert isinstance(matcher._root, MQTTMatcher.Node), PINS
    # paho's own, or the lean ones once a link client was made in this process (lean_paho)
    assert paho_packet.Properties in (Properties, LeanProperties), PINS  # type: ignore[attr-defined]
    assert paho_packet.ReasonCode in (ReasonCode, LeanReasonCode), PINS  # type: ignore[attr-defined]
    assert mqtt.MQTTMessageInfo in (_PAHOS_MESSAGE_INFO, LeanMessageInfo), PINS
    # the decoder builds its properties and reason codes by those global names (what
    # lean_paho replaces)
    decoder = inspect.getsource(paho_packet)
    assert "Properties(" in decoder, PINS
    assert "ReasonCode(" in decoder, PINS
    assert isinstance(_paho.paho_of(client)._on_message_filtered, MQTTMatcher), PINS


def test_paho_builds_and_reads_what_lean_paho_replaces() -> None:
    """The client calls the decoder's ``decode_puback`` by its module attribute, builds each
    message's info by the module's global name, and touches an info's condition only in the
    info's own methods (so :class:`LeanMessageInfo` may make it lazily)."""
    client = inspect.getsource(mqtt)
    assert "_packet.decode_puback(" in inspect.getsource(mqtt.Client._handle_pubackcomp), PINS
    assert "MQTTMessageInfo(" in inspect.getsource(mqtt.MQTTMessage.__init__), PINS
    assert "MQTTMessageInfo(" in inspect.getsource(mqtt.Client.publish), PINS
    info = inspect.getsource(_PAHOS_MESSAGE_INFO)
    assert "_condition" not in client.replace(info, ""), PINS
    assert "._set_as_published()" in client, PINS
    assert callable(getattr(_PAHOS_MESSAGE_INFO, "_set_as_published", None)), PINS
    # slots only, and LeanMessageInfo sets every one of them itself
    assert not hasattr(_PAHOS_MESSAGE_INFO(1), "__dict__"), PINS
    assert set(_PAHOS_MESSAGE_INFO.__slots__) == {
        "_condition",
        "_iterpos",
        "_published",
        "mid",
        "rc",
    }, PINS
    fields = paho_packet.PubackPacket._fields
    assert fields == ("mid", "reason", "properties"), PINS
    params = tuple(inspect.signature(_paho_lean._PAHOS_DECODE_PUBACK).parameters)
    assert params == ("header", "packet", "protocol"), PINS
    params = tuple(inspect.signature(ReasonCode.__init__).parameters)
    assert params == ("self", "packetType", "aName", "identifier"), PINS
    # the debug level quiet_debug_log skips is the one paho's packet lines use
    assert "MQTT_LOG_DEBUG" in inspect.getsource(mqtt.Client._handle_pubackcomp), PINS
    assert tuple(inspect.signature(mqtt.Client._easy_log).parameters) == (
        "self",
        "level",
        "fmt",
        "args",
    ), PINS


def test_a_fresh_reason_code_holds_what_lean_reason_code_sets() -> None:
    fresh = ReasonCode(PacketTypes.PUBACK)
    assert set(vars(fresh)) == set(_paho_lean.REASON_CODE_STATE), f"{PINS}: {sorted(vars(fresh))}"
    assert set(vars(LeanReasonCode(PacketTypes.PUBACK))) == set(_paho_lean.REASON_CODE_STATE)


async def test_paho_queues_packets_with_the_keys_the_joined_writes_use() -> None:
    paho = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="internals")  # never connected
    paho._packet_queue(mqtt.PUBACK, b"\x40\x02\x00\x01", 1, 1)
    queued = paho._out_packet[-1]
    lacking = [k for k in _paho_wire.OUT_PACKET_KEYS if k not in queued]
    assert not lacking, f"{PINS}: paho's queued packets lack {lacking}"
    assert (queued["pos"], queued["to_process"]) == (0, 4), PINS


def test_a_fresh_properties_holds_what_lean_properties_sets() -> None:
    fresh = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    assert set(vars(fresh)) == set(_paho_lean.PROPERTIES_STATE), f"{PINS}: {sorted(vars(fresh))}"


async def test_aiomqtt_sets_the_callbacks_the_links_chain() -> None:
    client = aiomqtt.Client("127.0.0.1", 1, identifier="internals")  # never connected
    paho = _paho.paho_of(client)
    not_aiomqtts = [
        name
        for name in _paho_wire.AIOMQTT_CALLBACKS
        if getattr(getattr(paho, name), "__self__", None) is not client
    ]
    assert not not_aiomqtts, f"{PINS}: aiomqtt no longer sets paho's {not_aiomqtts}"
    # its socket callback looks loop_read up on the paho instance (after_each_read wraps that)
    assert ".loop_read()" in inspect.getsource(aiomqtt.Client), PINS


def test_the_methods_the_bus_calls_take_the_arguments_it_passes() -> None:
    changed = {}
    for name, expected in SIGNATURES.items():
        params = tuple(inspect.signature(getattr(mqtt.Client, name)).parameters)[1:]
        if params[: len(expected)] != expected or any(
            inspect.signature(getattr(mqtt.Client, name)).parameters[p].default
            is inspect.Parameter.empty
            for p in params[len(expected) :]
        ):
            changed[name] = params
    assert not changed, f"{PINS} changed what fogmesh/bus/_paho.py calls: {changed}"


def test_only_the_adapters_touch_the_private_attributes() -> None:
    names = "|".join(
        n for relied in ADAPTERS.values() for ns in relied.values() for n in ns if n[0] == "_"
    )
    # ``self._client`` and the like are the bus's own attributes, ``fogmesh.bus._client`` a module
    use = re.compile(rf"(?<!self)(?<!fogmesh\.bus)\.({names})\b|paho\.mqtt\.(_packet)\b")
    sources = [p for p in sorted(BUS.glob("*.py")) if p.name not in ADAPTERS]
    sources += sorted(BROKER.glob("*.py"))
    used_elsewhere = {
        path.name: sorted({a or b for a, b in use.findall(path.read_text())})
        for path in sources
        if use.search(path.read_text())
    }
    assert not used_elsewhere, f"paho / aiomqtt internals outside the adapters: {used_elsewhere}"
    for module, relied in ADAPTERS.items():
        adapter = (BUS / module).read_text()
        unused = [n for ns in relied.values() for n in ns if f".{n}" not in adapter]
        assert not unused, f"RELIED_ON names what {module} does not use: {unused}"
