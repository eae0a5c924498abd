"""The whole registry on PostgreSQL: ingest through a real broker, queries, liveness."""

from __future__ import annotations

import pytest

from fogmesh.protocol import RemoteError
from fogmesh.protocol.queries import EventListReply, GetNode, ListEvents, NodeReply
from tests.registry.support import SimNode, ask, until, watched_registry
from tests.support.brokers import BrokerProcess
from tests.support.buses import unique


@pytest.mark.postgres
async def test_ingest_and_liveness_on_postgres(
    mosquitto_broker: BrokerProcess, pg_url: str
) -> None:
    broker = mosquitto_broker
    node = unique("n")
    async with (
        watched_registry(broker, pg_url, missed=3, default_interval=0.3) as (client, log),
        SimNode(broker, node, interval=0.3) as sim,
    ):

        async def stored() -> NodeReply | None:
            try:
                reply = await ask(client, "t", "nodes/get", GetNode(node=node), NodeReply)
            except RemoteError:
                return None
            return reply if (reply.node.last_seq or 0) >= 3 else None

        reply = await until(stored, what="heartbeats stored in PostgreSQL")
        assert reply.node.state == "online"
        assert reply.node.usage is not None
        assert reply.node.usage.memory_total_bytes == 8 << 30  # BIGINT
        assert len(reply.node.history) >= 3

        await sim.stop_heartbeats()
        await until(lambda: _async("node-lost" in log.kinds(node)), what="silent death judged")
        events = await ask(client, "t", "events/list", ListEvents(node=node), EventListReply)
        assert [e.kind.value for e in events.events] == [
            "node-joined",
            "node-stale",
            "node-lost",
        ]


async def _async(value: bool) -> bool:
    return value
