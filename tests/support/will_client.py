"""A bus client process that leaves a last will, for the SIGKILL test.

Usage: python -m tests.support.will_client PORT CLIENT_ID NODE
"""

from __future__ import annotations

import asyncio
import sys

from fogmesh.bus import Bus, BusConfig, Will
from fogmesh.protocol import NodeLiveness, NodeStateMessage, topics
from fogmesh.service import configure_logging


async def _main(port: int, client_id: str, node: str) -> None:
    will = Will(topics.node(node, "state"), NodeStateMessage(node=node, state=NodeLiveness.OFFLINE))
    configure_logging("warning")
    config = BusConfig(port=port, client_id=client_id, username=client_id, keepalive=5)
    async with Bus(config, will=will) as bus:
        await bus.wait_connected(timeout=15)
        await bus.publish(
            topics.node(node, "state"),
            NodeStateMessage(node=node, state=NodeLiveness.ONLINE),
            retain=True,
        )
        print("ready", flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(_main(int(sys.argv[1]), sys.argv[2], sys.argv[3]))
