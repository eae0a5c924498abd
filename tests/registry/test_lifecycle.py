"""Nodes' lives through a real broker and a real registry: join, heartbeat, silent and loud
death, rejoin. Conditions are awaited with generous deadlines; nothing asserts on timings."""

from __future__ import annotations

from fogmesh.bus import Bus
from fogmesh.protocol.queries import GetNode, NodeInfo, NodeReply
from tests.registry.support import ProcNode, SimNode, ask, until, watched_registry
from tests.support.brokers import BrokerProcess
from tests.support.buses import unique


async def get_node(bus: Bus, node: str) -> NodeInfo:
    return (await ask(bus, "t1", "nodes/get", GetNode(node=node), NodeReply)).node


async def test_join_heartbeat_silent_death_and_back(broker: BrokerProcess, sqlite_url: str) -> None:
    node = unique("n")
    async with (
        watched_registry(broker, sqlite_url, missed=3, default_interval=0.3) as (client, log),
        SimNode(broker, node, interval=0.3) as sim,
    ):
        await until(lambda: _async(log.kinds(node)[:1] == ["node-joined"]), what="joined")

        async def beating() -> NodeInfo | None:
            info = await get_node(client, node)
            return info if (info.last_seq or 0) >= 3 else None

        info = await until(beating, what="heartbeats stored")
        assert info.state == "online"
        assert info.facts is not None
        assert info.facts.arch == "x86_64"
        assert info.usage is not None
        assert info.usage.memory_used_bytes == 3 << 30
        assert info.heartbeat_interval_s == 0.3
        assert info.boot_id == sim.boot_id

        await sim.stop_heartbeats()  # silent: the connection stays, no last will
        await until(lambda: _async("node-lost" in log.kinds(node)), what="lost")
        assert log.kinds(node)[-2:] == ["node-stale", "node-lost"]
        lost = [e for e in log.events if e.node == node][-1]
        assert lost.data["reason"] == "missed-heartbeats"
        assert (await get_node(client, node)).state == "offline"

        sim.start_heartbeats()
        await until(lambda: _async(log.kinds(node)[-1] == "node-back"), what="back")
        await until(
            lambda: _state_is(client, node, "online"), what="stored online after coming back"
        )


async def test_loud_death_is_offline_at_once_then_rejoin(
    mosquitto_broker: BrokerProcess, sqlite_url: str
) -> None:
    node = unique("n")
    # heartbeats every 5 s and 3 missed: silence alone could not make it offline within the test
    settings = {"missed": 3, "default_interval": 5.0}
    async with watched_registry(mosquitto_broker, sqlite_url, **settings) as (client, log):
        first = ProcNode(mosquitto_broker, node, interval=5.0).start()
        try:
            await until(lambda: _async("node-joined" in log.kinds(node)), what="joined")
            boot1 = (await until(lambda: _boot(client, node), what="hello stored")).boot_id
            first.kill()
            await until(lambda: _async("node-lost" in log.kinds(node)), what="lost")
            lost = next(e for e in log.events if e.node == node and e.kind.value == "node-lost")
            assert lost.data["reason"] == "last-will"
            assert "node-stale" not in log.kinds(node)
            assert (await get_node(client, node)).state == "offline"
        finally:
            first.kill()
        second = ProcNode(mosquitto_broker, node, interval=5.0).start()
        try:
            await until(lambda: _async(log.kinds(node)[-1] == "node-back"), what="rejoined")
            back = [e for e in log.events if e.node == node][-1]
            assert back.data["rebooted"] is True
            info = await until(lambda: _online_with_new_boot(client, node, boot1), what="stored")
            assert info.facts is not None
            assert info.facts.arch == "aarch64"
        finally:
            second.kill()


async def _async(value: bool) -> bool:
    return value


async def _state_is(bus: Bus, node: str, state: str) -> bool:
    return (await get_node(bus, node)).state == state


async def _boot(bus: Bus, node: str) -> NodeInfo | None:
    info = await get_node(bus, node)
    return info if info.boot_id else None


async def _online_with_new_boot(bus: Bus, node: str, old_boot: str) -> NodeInfo | None:
    info = await get_node(bus, node)
    return info if info.state == "online" and info.boot_id not in ("", old_boot) else None
