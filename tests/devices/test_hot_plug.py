"""Hot-plug: a device node made (or removed) under a running agent's device root shows in (or
leaves) the node's facts within a heartbeat, without a restart: the agent sends its hello
again, which the registry stores as the node's facts."""

from __future__ import annotations

import json
from pathlib import Path

from fogmesh.protocol import NodeHello, topics
from fogmesh.protocol.topics import NodeChannel
from tests.agent.support import AgentProc, Probe, wait_for
from tests.devices.conftest import make_char_device
from tests.support.brokers import BrokerProcess
from tests.support.buses import unique


async def test_device_added_and_removed_shows_without_restart(
    *,
    tmp_path: Path,
    device_root: Path,
    broker: BrokerProcess,
    probe: Probe,
    agents: list[AgentProc],
    run_label: str,
) -> None:
    """The first hello has no serial port; one made after it shows in a later hello, with the
    same boot id (no restart); once removed, a later hello no longer has it."""
    node = unique("hp")
    hellos: list[NodeHello] = probe.watch(topics.node(node, NodeChannel.HELLO), NodeHello)
    config = tmp_path / "agent.json"
    config.write_text(json.dumps({"device_root": str(device_root)}))
    agent = AgentProc(
        node,
        broker.port,
        tmp_path / "state",
        run_label,
        extra=["--config", str(config), "--runtimes", "native"],
    ).start()
    agents.append(agent)

    def has(name: str, present: bool) -> bool:
        return bool(hellos) and (name in hellos[-1].facts.devices) is present

    await wait_for(lambda: bool(hellos), what="the first hello")
    assert hellos[0].facts.devices == []
    make_char_device(device_root / "dev/ttyUSB0")
    await wait_for(lambda: has("serial:ttyUSB0", True), what="the hello with the new port")
    info = [i for i in hellos[-1].facts.device_info if i.name == "serial:ttyUSB0"]
    assert [i.path for i in info] == [str(device_root / "dev/ttyUSB0")]
    (device_root / "dev/ttyUSB0").unlink()
    await wait_for(lambda: has("serial:ttyUSB0", False), what="the hello without the port")
    assert len({h.boot_id for h in hellos}) == 1
    assert agent.alive()
