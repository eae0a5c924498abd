"""Hot-plug: a device node made (or removed) under a running agent's device root shows in (or
leaves) the node's facts within a heartbeat, without a restart: the agent sends its hello
again, which the registry stores as the node's facts; the workload given a device that goes
away is told by a ``device-lost`` event."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fogmesh.protocol import (
    ActualState,
    DeviceLostData,
    Event,
    EventKind,
    NodeHello,
    WorkloadPhase,
    topics,
)
from fogmesh.protocol.topics import NodeChannel
from tests.agent.helpers import desired
from tests.agent.support import AgentProc, Probe, mosquitto_pub, wait_for
from tests.devices.conftest import make_char_device
from tests.support.brokers import BrokerProcess
from tests.support.buses import unique

# its workload's tenant account (fm-t-dev-a) is a fixed name shared with test_native_devices
pytestmark = [pytest.mark.mosquitto, pytest.mark.xdist_group("device-tenants")]


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
    same boot id (no restart); the workload given it runs; once removed, a later hello no longer
    has it and the workload's tenant gets a device-lost event naming it."""
    node = unique("hp")
    hellos: list[NodeHello] = probe.watch(topics.node(node, NodeChannel.HELLO), NodeHello)
    actuals: list[ActualState] = probe.watch(topics.node(node, NodeChannel.ACTUAL), ActualState)
    lost: list[Event] = probe.watch(topics.tenant_event("dev-a", EventKind.DEVICE_LOST), Event)
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
    holder = {
        "name": "holder",
        "tenant": "dev-a",
        "app": "sense",
        "component": "holder",
        "runtime": "native",
        "executable": "/bin/sleep",
        "command": ["300"],
        "devices": ["serial:ttyUSB0"],
    }
    mosquitto_pub(broker, topics.node(node, "desired"), desired(node, 1, holder))

    def running() -> bool:
        return bool(actuals) and any(
            w.name == "holder" and w.phase is WorkloadPhase.RUNNING for w in actuals[-1].workloads
        )

    await wait_for(running, what="the workload given the port running")
    (device_root / "dev/ttyUSB0").unlink()
    await wait_for(lambda: has("serial:ttyUSB0", False), what="the hello without the port")
    await wait_for(lambda: bool(lost), what="the device-lost event")
    assert (lost[0].workload, lost[0].node) == ("holder", node)
    data = lost[0].payload_as(DeviceLostData)
    assert (data.device, data.kind) == ("serial:ttyUSB0", "serial")
    assert len({h.boot_id for h in hellos}) == 1
    assert agent.alive()
