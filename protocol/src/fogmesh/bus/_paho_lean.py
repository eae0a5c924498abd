"""paho-mqtt's per-packet and per-message objects, made lean (process-wide).

A bridge link decodes a PUBACK for every message it sends and builds an ``MQTTMessageInfo``
for every message it publishes or receives; paho builds each with tables and locks of its
own. :func:`lean_paho` makes paho's decoder and client build the classes here instead, each
behaving as paho's (``tests/bus/test_paho_lean.py``). Written against paho-mqtt 2.2, as
:mod:`fogmesh.bus._paho_wire` (the per-client hooks of a link's hot path): :data:`RELIED_ON`
lists what it relies on, and ``tests/bus/test_paho_internals.py`` fails, naming what is gone,
when an upgrade moves one.
"""

from __future__ import annotations

import threading

import paho.mqtt._packet as paho_packet
import paho.mqtt.client as paho_client
from paho.mqtt.enums import MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

__all__ = [
    "PROPERTIES_STATE",
    "REASON_CODE_STATE",
    "RELIED_ON",
    "LeanMessageInfo",
    "LeanProperties",
    "LeanReasonCode",
    "decode_puback",
    "lean_paho",
    "lean_properties",
]

RELIED_ON: dict[str, tuple[str, ...]] = {
    "paho.mqtt.client.MQTTMessageInfo": ("_condition", "_published"),
    "paho.mqtt._packet": ("Properties", "ReasonCode", "decode_puback", "PubackPacket"),
    "paho.mqtt.client": ("MQTTMessageInfo",),
}
"""The private attributes this module uses, by what carries them (``paho.mqtt._packet`` is
paho's private decoder module: its globals ``Properties`` and ``ReasonCode`` are what it builds
per packet, ``decode_puback`` is what the client calls per PUBACK; ``paho.mqtt.client``'s global
``MQTTMessageInfo`` is what ``MQTTMessage`` and ``Client.publish`` build per message, and
:class:`LeanMessageInfo` overrides its ``_set_as_published``, which the client calls)."""

PROPERTIES_STATE = ("packetType", "types", "names", "properties")
"""What a paho ``Properties`` holds before any property is set: :class:`LeanProperties` sets
them itself and shares the three tables."""

REASON_CODE_STATE = ("names", "packetType", "value")
"""What a paho ``ReasonCode`` holds: :class:`LeanReasonCode` sets them itself, ``names`` shared."""

_TABLES = Properties(0)  # type: ignore[no-untyped-call]


class LeanProperties(Properties):
    """paho's ``Properties`` with the name and type tables shared, not built per packet."""

    def __init__(self, packetType: int) -> None:  # noqa: N803 (paho's name)
        setattr_ = object.__setattr__
        setattr_(self, "packetType", packetType)
        setattr_(self, "types", _TABLES.types)
        setattr_(self, "names", _TABLES.names)
        setattr_(self, "properties", _TABLES.properties)

    def unpack(self, buffer: bytes | bytearray) -> tuple[Properties, int]:
        """paho's ``unpack``; an empty property list on a fresh object costs nothing."""
        if buffer[:1] == b"\x00" and len(self.__dict__) == len(PROPERTIES_STATE):
            return self, 1
        result: tuple[Properties, int] = super().unpack(buffer)  # type: ignore[no-untyped-call]
        return result


def lean_properties() -> None:
    """Make paho's packet decoder build :class:`LeanProperties` (process-wide, idempotent)."""
    paho_packet.Properties = LeanProperties  # type: ignore[attr-defined]


_BY_NAME: dict[tuple[int, str], int] = {}
"""(packet type, name) -> the code paho's ``ReasonCode(packet type, name)`` has."""
_BY_CODE: dict[tuple[int, int], int] = {}
"""(packet type, code) -> the code paho's ``ReasonCode.unpack`` sets (the code itself)."""
_CODES: set[tuple[int, int]] = set()
"""(packet type, code) pairs paho's ``ReasonCode(packet type, identifier=code)`` accepted."""


class LeanReasonCode(ReasonCode):
    """paho's ``ReasonCode`` without its per-object work: paho copies the table of 40 codes
    into every object (``names``) and finds a name's code by walking it; here the table is
    paho's own, read-only, and each (packet type, name or code) is looked up by paho once and
    remembered. Values, names, comparisons and the errors of an unknown name or code are
    paho's (the first lookup of a pair is paho's own code)."""

    def __init__(
        self,
        packetType: int,  # noqa: N803 (paho's names)
        aName: str = "Success",  # noqa: N803
        identifier: int = -1,
    ) -> None:
        if identifier == -1:
            value = _BY_NAME.get((packetType, aName))
            if value is None:
                super().__init__(packetType, aName)
                _BY_NAME[(packetType, aName)] = self.value
                value = self.value
        else:
            if (packetType, identifier) not in _CODES:
                super().__init__(packetType, identifier=identifier)
                _CODES.add((packetType, identifier))
            value = identifier
        self.names = ReasonCode.names
        self.packetType = packetType
        self.value = value

    def unpack(self, buffer: bytes | bytearray) -> int:
        """paho's ``unpack``: the code in ``buffer[0]``, checked against the packet type."""
        key = (self.packetType, buffer[0])
        value = _BY_CODE.get(key)
        if value is None:
            read = super().unpack(buffer)
            _BY_CODE[key] = self.value
            return read
        self.value = value
        return 1


_PUBACK = PacketTypes.PUBACK
_PAHOS_DECODE_PUBACK = paho_packet.decode_puback


def decode_puback(
    header: int, packet: bytes | bytearray, protocol: MQTTProtocolVersion
) -> paho_packet.PubackPacket:
    """paho's ``decode_puback``; a PUBACK that is only a packet id (every one on MQTT 3.1.1,
    a success without properties on MQTT 5) is read here, without paho's generic path (an
    exception wrapper, a ``struct`` call and its ``ReasonCode`` and ``Properties`` built
    twice on MQTT 5). It gets what paho gives it: a success reason code, empty properties."""
    if len(packet) == 2:
        return paho_packet.PubackPacket(
            (packet[0] << 8) | packet[1], LeanReasonCode(_PUBACK), LeanProperties(_PUBACK)
        )
    return _PAHOS_DECODE_PUBACK(header, packet, protocol)


_MAKING = threading.Lock()
"""Held while a :class:`LeanMessageInfo` makes its condition (once per object at most)."""


class LeanMessageInfo(paho_client.MQTTMessageInfo):
    """paho's ``MQTTMessageInfo`` (what ``publish`` returns, and every ``MQTTMessage`` holds)
    without a ``threading.Condition`` (and its ``RLock``) per message: the condition is made
    when someone first waits (``wait_for_publish``), under a lock, so only a waited-on message
    pays for it. ``_set_as_published`` marks the message published and, if a condition was
    made, notifies under it as paho does; a waiter makes its condition before it looks at
    ``_published`` (under that condition), so it sees the mark or gets the notification.
    ``is_published``, ``wait_for_publish`` (paho's own, with the condition made first),
    ``rc``, ``mid``, ``str``, iteration and indexing are paho's."""

    __slots__ = ()

    def __init__(self, mid: int) -> None:
        self.mid = mid
        self._published = False
        self._condition = None  # type: ignore[assignment]
        self.rc = MQTTErrorCode.MQTT_ERR_SUCCESS
        self._iterpos = 0

    def _made_condition(self) -> threading.Condition:
        condition: threading.Condition | None = self._condition
        if condition is None:
            with _MAKING:
                condition = self._condition
                if condition is None:
                    condition = self._condition = threading.Condition()
        return condition

    def _set_as_published(self) -> None:
        self._published = True
        condition: threading.Condition | None = self._condition
        if condition is not None:
            with condition:
                condition.notify_all()

    def wait_for_publish(self, timeout: float | None = None) -> None:
        """paho's ``wait_for_publish``."""
        self._made_condition()
        super().wait_for_publish(timeout)

    def is_published(self) -> bool:
        """paho's ``is_published`` (its errors for a failed ``rc``; no lock to read a bool)."""
        if self.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            self._made_condition()
            return super().is_published()
        return self._published


def lean_paho() -> None:
    """Make paho build the lean objects (process-wide, idempotent): :class:`LeanProperties`
    and :class:`LeanReasonCode` in its decoder, :func:`decode_puback` for every PUBACK, and
    :class:`LeanMessageInfo` for every message published or received."""
    lean_properties()
    paho_packet.ReasonCode = LeanReasonCode  # type: ignore[attr-defined]
    paho_packet.decode_puback = decode_puback
    paho_client.MQTTMessageInfo = LeanMessageInfo  # type: ignore[misc]
