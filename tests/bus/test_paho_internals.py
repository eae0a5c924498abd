"""The paho-mqtt and aiomqtt internals the bus relies on are there (``fogmesh.bus._paho``).

The bus reaches past both libraries' public API in a few places (manual PUBACKs written in one
batch, the half-keepalive pings, the read buffer, the bounded disconnect). An upgrade that drops
or reshapes one of those internals must fail here, naming it, not in a fleet. The clients below
are built but never connected: what is checked is their shape, not a broker's behaviour (the
other tests in this directory run that against real brokers).
"""

from __future__ import annotations

import asyncio
import inspect
import re
from importlib.metadata import version
from pathlib import Path

import aiomqtt
import paho.mqtt.client as mqtt

from fogmesh.bus import _paho

BUS = Path(_paho.__file__).parent
PINS = f"paho-mqtt {version('paho-mqtt')}, aiomqtt {version('aiomqtt')}"

# How the bus calls the methods it relies on: their parameters after ``self``.
SIGNATURES = {
    "_packet_queue": ("command", "packet", "mid", "qos"),
    "_sock_recv": ("bufsize",),
    "_packet_read": (),
    "_loop_rc_handle": ("rc",),
    "_send_pingreq": (),
    "_sock_close": (),
    "loop_read": ("max_packets",),
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


def test_only_the_adapter_touches_the_private_attributes() -> None:
    names = "|".join(n for ns in _paho.RELIED_ON.values() for n in ns if n.startswith("_"))
    # ``self._client`` and the like are the bus's own attributes, ``fogmesh.bus._client`` a module
    use = re.compile(rf"(?<!self)(?<!fogmesh\.bus)\.({names})\b")
    used_elsewhere = {
        path.name: sorted(set(use.findall(path.read_text())))
        for path in sorted(BUS.glob("*.py"))
        if path.name != "_paho.py" and use.search(path.read_text())
    }
    assert not used_elsewhere, f"paho / aiomqtt internals outside _paho.py: {used_elsewhere}"
    adapter = (BUS / "_paho.py").read_text()
    unused = [n for ns in _paho.RELIED_ON.values() for n in ns if f".{n}" not in adapter]
    assert not unused, f"RELIED_ON names what _paho.py does not use: {unused}"
