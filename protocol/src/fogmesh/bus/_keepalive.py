"""A PINGREQ every half keepalive.

paho pings once a keepalive (aiomqtt checks once a second), and a broker closes a session it has
heard nothing from for 1.5 keepalives: half a keepalive of slack, which scheduling delays on a
loaded machine use up. An idle node agent sends nothing else for minutes (its heartbeats go on
news only), so its site broker fired its will now and then although it was alive. Pinging every
half keepalive leaves a whole keepalive of slack; the packets (2 bytes each way) stay on the
connection to the bus's own broker.
"""

from __future__ import annotations

import asyncio

from paho.mqtt.client import Client as PahoClient

from fogmesh.bus import _paho

__all__ = ["early_pings"]


async def early_pings(paho: PahoClient, keepalive: float, sent: list[int]) -> None:
    """Ping ``paho``'s broker every half ``keepalive`` while no ping is outstanding.

    Runs until cancelled; ``sent[0]`` counts the pings. The bookkeeping is paho's own, as its
    keepalive check does it (:func:`fogmesh.bus._paho.ping_now`), so paho does not ping again
    in between, and a PINGRESP that does not come within a keepalive still closes the
    connection."""
    if keepalive <= 0:
        return
    while True:
        await asyncio.sleep(keepalive / 2)
        if _paho.ping_now(paho):
            sent[0] += 1
