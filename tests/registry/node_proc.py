"""A simulated node agent process: hello, state online (with a last will), heartbeats.

Usage: python tests/registry/node_proc.py PORT NODE INTERVAL
"""

from __future__ import annotations

import asyncio
import sys
import uuid

from fogmesh.bus import Bus, BusConfig, Will
from fogmesh.protocol import (
    Heartbeat,
    NodeFacts,
    NodeHello,
    NodeLiveness,
    NodeStateMessage,
    Usage,
    topics,
)
from fogmesh.service import configure_logging


async def _main(port: int, node: str, interval: float) -> None:
    configure_logging("warning")
    boot = uuid.uuid4().hex[:12]
    will = Will(
        topics.node(node, "state"),
        NodeStateMessage(node=node, state=NodeLiveness.OFFLINE, boot_id=boot),
    )
    client = f"agent-{node}-{boot}"
    config = BusConfig(port=port, client_id=client, username=client, keepalive=5)
    facts = NodeFacts(
        device_id=node, arch="aarch64", cpu_count=2, memory_bytes=1 << 30, disk_bytes=1
    )
    usage = Usage(
        cpu_percent=1,
        memory_used_bytes=1,
        memory_total_bytes=1,
        disk_used_bytes=1,
        disk_total_bytes=1,
    )
    async with Bus(config, will=will) as bus:
        await bus.wait_connected(timeout=15)
        await bus.publish(
            topics.node(node, "hello"), NodeHello(node=node, facts=facts, boot_id=boot), retain=True
        )
        await bus.publish(
            topics.node(node, "state"),
            NodeStateMessage(node=node, state=NodeLiveness.ONLINE, boot_id=boot),
            retain=True,
        )
        print("ready", flush=True)
        seq = 0
        while True:
            hb = Heartbeat(node=node, seq=seq, interval_s=interval, usage=usage)
            await bus.publish(topics.node(node, "heartbeat"), hb, qos=0)
            seq += 1
            await asyncio.sleep(interval)


if __name__ == "__main__":
    asyncio.run(_main(int(sys.argv[1]), sys.argv[2], float(sys.argv[3])))
