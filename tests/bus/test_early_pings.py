"""A bus pings its broker every half keepalive (fogmesh.bus._keepalive).

paho alone pings once a keepalive, leaving half a keepalive before the broker's
1.5-keepalive deadline; a node agent that sends heartbeats on news only is idle for minutes, and
its site broker fired its will now and then on a loaded machine. Against a real broker of each
kind: an idle bus sends its own pings and its session never drops.
"""

from __future__ import annotations

import asyncio

from fogmesh.bus import Bus
from tests.support.brokers import BrokerProcess
from tests.support.buses import bus_config, eventually


async def test_an_idle_bus_pings_and_keeps_its_session(broker: BrokerProcess) -> None:
    async with Bus(bus_config(broker, keepalive=2)) as bus:
        await bus.wait_connected(10)
        await eventually(lambda: bus.pings_sent >= 3, 30.0, "pings while idle")
        await asyncio.sleep(0.5)
        assert bus.connected
        assert bus.connects == 1, "the idle session dropped and reconnected"
