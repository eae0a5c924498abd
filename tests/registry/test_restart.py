"""A restarted registry rebuilds its view from the database and the retained topics, and
does not flap live nodes to offline; a node that died while it was away is still judged."""

from __future__ import annotations

import asyncio

from fogmesh.bus import Bus
from fogmesh.protocol.queries import ListNodes, NodeListReply
from tests.registry.support import EventLog, SimNode, ask, run_registry, until
from tests.support.brokers import BrokerProcess
from tests.support.buses import bus_config, unique


async def states(bus: Bus) -> dict[str, str]:
    reply = await ask(bus, "t1", "nodes/list", ListNodes(limit=100), NodeListReply)
    return {n.node: n.state for n in reply.nodes}


async def test_restart_with_nodes_alive_flaps_none(
    mosquitto_broker: BrokerProcess, sqlite_url: str
) -> None:
    broker = mosquitto_broker
    registry_id = unique("registry")
    settings = {"missed": 4, "default_interval": 0.5}
    alive = [unique("alive") for _ in range(3)]
    dying = unique("dying")
    async with Bus(bus_config(broker)) as client:
        log = EventLog()
        log.attach(client)
        await client.wait_connected(timeout=15)
        sims = [await SimNode(broker, n, interval=0.5).__aenter__() for n in [*alive, dying]]
        try:
            async with run_registry(broker, sqlite_url, registry_id, **settings):
                await until(lambda: _all_online(client, [*alive, dying]), what="all four online")
            # the registry is down; one node dies silently meanwhile, the others beat on
            await sims[-1].stop_heartbeats()
            await asyncio.sleep(1.0)
            async with run_registry(broker, sqlite_url, registry_id, **settings) as second:
                assert set(second.tracker.nodes) >= {*alive, dying}  # rebuilt from the database
                # the silent one is judged after its grace; wait for that, then look at the others
                await until(
                    lambda: _async("node-lost" in log.kinds(dying)), what="dead node judged"
                )
                await asyncio.sleep(1.0)  # the live nodes have had their grace and more
                now = await states(client)
                assert {n: now[n] for n in alive} == dict.fromkeys(alive, "online")
                assert now[dying] == "offline"
            for node in alive:
                assert "node-lost" not in log.kinds(node), log.kinds(node)
        finally:
            for sim in sims:
                await sim.__aexit__(None, None, None)


async def _async(value: bool) -> bool:
    return value


async def _all_online(bus: Bus, nodes: list[str]) -> bool:
    now = await states(bus)
    return all(now.get(n) == "online" for n in nodes)
