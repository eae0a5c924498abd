"""``fogmesh up --tls``'s plan: brokers with TLS listeners from the fleet's own CA, sites linked
to the cloud over TLS, agents on their site's TLS listener (the brokers run for real)."""

from __future__ import annotations

import asyncio
import stat
import time
from pathlib import Path

import aiomqtt
import yaml

from fogmesh.agent.config import AgentConfig
from fogmesh.bus import Bus
from fogmesh.cli.fleet.tls import TlsFleetPlan
from fogmesh.protocol import topics
from tests.support.mesh import MeshProcess


async def test_fleet_with_tls_links_and_agents(tmp_path: Path, procs: list[MeshProcess]) -> None:
    plan = TlsFleetPlan.make(tmp_path / "fleet", 2, "native")
    assert isinstance(plan, TlsFleetPlan)  # FleetPlan.make builds the class it is called on
    paths = plan.write_files()
    assert stat.S_IMODE((plan.pki / "ca.key").stat().st_mode) == 0o600
    mesh = yaml.safe_load(paths["mesh"].read_text())
    assert all(lk["remote"]["listener"] == "wan" for lk in mesh["links"])
    for name in ("cloud", "site-a", "site-b"):
        procs.append(MeshProcess(paths["mesh"], name).start())
    node = plan.nodes[0]
    agent = AgentConfig.model_validate(yaml.safe_load(paths[f"agent-{node.node}"].read_text()))
    assert agent.broker.tls
    assert agent.broker.port == plan.tls_ports[node.site]
    op = plan.accounts["operator"]
    got: list[aiomqtt.Message] = []
    async with aiomqtt.Client(
        "127.0.0.1", plan.ports["cloud"], username=op.username, password=op.password,
        identifier="operator-tls-test", timeout=20,
    ) as cloud:  # fmt: skip
        await cloud.subscribe(topics.node(node.node, "state"), qos=1)
        reader = asyncio.create_task(_collect(cloud, got))
        # the agent's own settings: its site's TLS listener, verified against the fleet's CA
        async with Bus(agent.broker.bus_config(f"{node.node}-agent", clean_session=True)) as bus:
            await bus.wait_connected(timeout=30)
            deadline = time.monotonic() + 60
            while not got:  # the site's TLS link to the cloud may still be connecting
                assert time.monotonic() < deadline, "the node's state never reached the cloud"
                await bus.publish_raw(topics.node(node.node, "state"), b"{}", qos=1)
                await asyncio.sleep(0.5)
        reader.cancel()
    assert got[0].topic.value == topics.node(node.node, "state")


async def _collect(c: aiomqtt.Client, sink: list[aiomqtt.Message]) -> None:
    async for msg in c.messages:
        sink.append(msg)
