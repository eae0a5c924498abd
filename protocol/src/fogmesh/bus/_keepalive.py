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
import time

from paho.mqtt.client import Client as PahoClient

__all__ = ["early_pings"]


async def early_pings(paho: PahoClient, keepalive: float, sent: list[int]) -> None:
    """Ping ``paho``'s broker every half ``keepalive`` while no ping is outstanding.

    Runs until cancelled; ``sent[0]`` counts the pings. The bookkeeping is paho's own, as its
    keepalive check does it (``_ping_t``, and both message times set to now), so paho does not
    ping again in between, and a PINGRESP that does not come within a keepalive still closes
    the connection."""
    if keepalive <= 0:
        return
    while True:
        await asyncio.sleep(keepalive / 2)
        if not paho.is_connected() or paho._ping_t != 0:
            continue
        paho._send_pingreq()
        now = time.monotonic()
        with paho._msgtime_mutex:
            paho._last_msg_out = now
            paho._last_bytes_received = now
        sent[0] += 1
