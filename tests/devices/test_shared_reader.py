"""The shared reader: a serial sensor (a pseudo-terminal pair the test writes readings into)
listed in the node config's ``device_streams`` is read by the agent alone, and each reading
reaches every app on the node whose workload asked for it, on that app's own data topic."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from fogmesh.agent.devices import DeviceCatalog
from fogmesh.bus import RawMessage
from fogmesh.protocol import ActualState, WorkloadPhase, topics
from fogmesh.protocol.topics import NodeChannel
from tests.agent.helpers import desired
from tests.agent.support import AgentProc, Probe, mosquitto_pub, wait_for
from tests.devices.conftest import make_char_device
from tests.support.brokers import BrokerProcess
from tests.support.buses import unique

# its workloads' tenant account (fm-t-dev-a) is a fixed name shared with the other device tests
pytestmark = [pytest.mark.mosquitto, pytest.mark.xdist_group("device-tenants")]


@pytest.fixture
def sensor() -> Iterator[tuple[int, str]]:
    """A pty pair: (the master the test writes readings into, the slave's path)."""
    master, slave = os.openpty()
    try:
        yield master, os.ttyname(slave)
    finally:
        os.close(master)
        os.close(slave)


def _sleeper(app: str, path: str) -> dict[str, object]:
    return {
        "name": f"{app}-reader-0",
        "tenant": "dev-a",
        "app": app,
        "component": "reader",
        "runtime": "native",
        "executable": "/bin/sleep",
        "command": ["300"],
        "devices": [path],
    }


async def test_two_apps_each_get_every_reading(
    *,
    tmp_path: Path,
    device_root: Path,
    sensor: tuple[int, str],
    broker: BrokerProcess,
    probe: Probe,
    agents: list[AgentProc],
    run_label: str,
) -> None:
    """Two apps asking for the streamed sensor both run (it is shared) and each receives every
    reading the test writes, in order, on ``fm/v1/data/dev-a/{app}/device-{node}``."""
    master, path = sensor
    node = unique("sr")
    stream = f"device-{Path(path).name}"
    got = {
        app: probe.watch(topics.data("dev-a", app, stream), RawMessage) for app in ("one", "two")
    }
    actuals: list[ActualState] = probe.watch(topics.node(node, NodeChannel.ACTUAL), ActualState)
    config = tmp_path / "agent.json"
    config.write_text(
        json.dumps({"device_root": str(device_root), "devices": [path], "device_streams": [path]})
    )
    agent = AgentProc(
        node,
        broker.port,
        tmp_path / "state",
        run_label,
        extra=["--config", str(config), "--runtimes", "native"],
    ).start()
    agents.append(agent)
    workloads = [_sleeper("one", path), _sleeper("two", path)]
    mosquitto_pub(broker, topics.node(node, "desired"), desired(node, 1, *workloads))

    def both_running() -> bool:
        running = {w.name for w in (actuals[-1].workloads if actuals else ())
                   if w.phase is WorkloadPhase.RUNNING}  # fmt: skip
        return running >= {"one-reader-0", "two-reader-0"}

    await wait_for(both_running, what="both apps' workloads running")

    def warmed() -> bool:  # the subscriptions and the reader are live: press until both hear
        os.write(master, b"warm\n")
        return all(got.values())

    await wait_for(warmed, what="a first reading at both apps")
    readings = [f"t={i} 21.{i}C".encode() for i in range(5)]
    for reading in readings:
        os.write(master, reading + b"\r\n")

    def heard(app: str) -> list[bytes]:
        return [m.payload for m in got[app] if m.payload != b"warm"]

    await wait_for(lambda: all(len(heard(a)) >= len(readings) for a in got), what="every reading")
    assert heard("one") == readings
    assert heard("two") == readings
    assert agent.alive()


def test_a_streamed_device_is_shared_and_never_given(device_root: Path) -> None:
    """A streamed device is offered as shared (several apps may ask) and the runtimes are
    given only the other devices a workload asks for: the reader alone opens it."""
    make_char_device(device_root / "dev/ttyUSB0")
    make_char_device(device_root / "dev/video0")
    catalog = DeviceCatalog(root=device_root, streamed=frozenset({"serial:ttyUSB0"}))
    assert [i.name for i in catalog.scan() if i.shared] == ["serial:ttyUSB0"]
    given = catalog.given(["serial[]", "video:video0"])
    assert [i.name for i in given] == ["video:video0"]
