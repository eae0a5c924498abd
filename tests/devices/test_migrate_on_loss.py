"""Migrate on device loss (real agents, Mosquitto, the scheduler and the migrator): each node
has a serial sensor ``serial:ttyUSB0`` (a pseudo-terminal pair linked under its device root).
When the sensor of the node running an app whose manifest says ``on_device_lost: migrate``
goes away, the holder is told (``device-lost``) and moved to the node with an equal sensor
(trigger ``device-lost``); an app without it on the same node is told and stays."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from fogmesh.migrator.device_loss import DeviceLoss
from fogmesh.migrator.fleet import FleetView
from fogmesh.migrator.guard import Guard
from fogmesh.migrator.mover import Outcome
from fogmesh.protocol.events import DeviceLostData, Event, EventKind, MigrationData
from fogmesh.protocol.migration import MigrationTrigger, StageOutcome
from fogmesh.protocol.node import DeviceInfo, NodeFacts, NodeHello
from fogmesh.protocol.workload import DesiredState, DeviceLossPolicy, WorkloadSpec
from tests.agent.support import wait_for
from tests.migrator.support import TENANT, stack

NODES = ["dl-a", "dl-b"]
MOVER = "sense-worker-0"
STAYER = "keep-worker-0"


@pytest.fixture
def sensors(tmp_path: Path) -> Iterator[dict[str, tuple[int, Path]]]:
    """Per node: (the pty master, the ``{root}/dev/ttyUSB0`` link to its slave)."""
    made: dict[str, tuple[int, Path]] = {}
    slaves = []
    for node in NODES:
        master, slave = os.openpty()
        slaves.append(slave)
        link = tmp_path / f"root-{node}" / "dev" / "ttyUSB0"
        link.parent.mkdir(parents=True)
        link.symlink_to(os.ttyname(slave))
        made[node] = (master, link)
    try:
        yield made
    finally:
        for master, _link in made.values():
            close_once(master)
        for slave in slaves:
            os.close(slave)


def close_once(fd: int) -> None:
    """Close ``fd`` if it is still open (the test closes a lost sensor's master itself)."""
    with contextlib.suppress(OSError):
        os.close(fd)


async def test_the_holder_moves_to_the_node_with_an_equal_sensor(
    tmp_path: Path, run_label: str, sensors: dict[str, tuple[int, Path]]
) -> None:
    args = {}
    for node in NODES:
        config = tmp_path / f"{node}.json"
        config.write_text(json.dumps({
            "device_root": str(tmp_path / f"root-{node}"),
            "shared_devices": ["serial:ttyUSB0"],  # both apps may hold one node's sensor
            # a pty's node (devpts) takes no ACL entry: the workloads run as the agent here
            "native_isolation": "agent-user",
        }))  # fmt: skip
        args[node] = ["--config", str(config)]
    async with stack(tmp_path, run_label, NODES, agent_args=args) as st:
        asks = {"devices": ["serial:ttyUSB0"], "on_device_lost": "migrate"}
        reply = await st.deploy("sense", placement=asks)
        source = reply.app.placements[0].node
        assert source is not None
        peer = next(n for n in NODES if n != source)
        await st.deploy("keep", placement={"devices": ["serial:ttyUSB0"], "node": source})
        await wait_for(lambda: st.runs(source, MOVER) and st.runs(source, STAYER), 90, "both")

        master, link = sensors[source]
        link.unlink()  # the adapter is pulled out
        close_once(master)

        def lost(workload: str) -> list[Event]:
            return [e for e in st.kinds(EventKind.DEVICE_LOST) if e.workload == workload]

        await wait_for(lambda: bool(lost(MOVER)) and bool(lost(STAYER)), 60, "device-lost")
        assert lost(MOVER)[0].payload_as(DeviceLostData).device == "serial:ttyUSB0"
        await wait_for(lambda: bool(st.kinds(EventKind.MIGRATION_FINISHED)), 120, "the move")
        done = st.kinds(EventKind.MIGRATION_FINISHED)
        assert [e.workload for e in done] == [MOVER]
        data = done[0].payload_as(MigrationData)
        assert (data.trigger, data.from_, data.to) == (MigrationTrigger.DEVICE_LOST, source, peer)
        await wait_for(lambda: st.where(MOVER) == [peer], 60, "running on the peer only")
        assert st.where(STAYER) == [source]  # told, and kept where it is
        assert not st.kinds(EventKind.MIGRATION_FAILED)
        assert all(e.workload == MOVER for e in st.kinds(EventKind.MIGRATION_STARTED))


# -- the decision alone (no fleet): what an event moves --------------------------------------


def _fleet(policy: DeviceLossPolicy, *, device_present: bool) -> FleetView:
    fleet = FleetView()
    infos = [DeviceInfo(name="serial:ttyUSB0", path="/dev/ttyUSB0", kind="serial")]
    facts = NodeFacts.model_validate({
        "device_id": "d1", "arch": "x86_64", "cpu_count": 1, "memory_bytes": 2**30,
        "disk_bytes": 2**30,
        "devices": ["serial:ttyUSB0"] if device_present else [],
        "device_info": infos if device_present else [],
    })  # fmt: skip
    fleet.on_hello(NodeHello(node="n1", facts=facts, boot_id="b"))
    spec = WorkloadSpec(
        name="w", tenant=TENANT, app="a", component="c", runtime="native",
        executable="/bin/true", devices=["serial:ttyUSB0"], on_device_lost=policy,
    )  # fmt: skip
    fleet.on_desired(DesiredState(node="n1", generation=1, workloads=[spec]))
    return fleet


def _event(**fields: object) -> Event:
    data = DeviceLostData(device="serial:ttyUSB0", path="/dev/ttyUSB0", kind="serial")
    base: dict[str, object] = {"tenant": TENANT, "node": "n1", "workload": "w"}
    return Event.of(EventKind.DEVICE_LOST, data, **{**base, **fields})


async def test_only_a_confirmed_loss_of_a_migrating_holder_moves_it() -> None:
    moves: list[tuple[str, str, MigrationTrigger]] = []

    async def move(tenant: str, workload: str, trigger: MigrationTrigger) -> Outcome:
        moves.append((tenant, workload, trigger))
        return Outcome(StageOutcome.MOVED, peer="n2")

    guard = Guard(cooldown_s=0, budget=10, window_s=60, avoid_s=0)
    staying = DeviceLoss(_fleet(DeviceLossPolicy.STAY, device_present=False), guard)
    assert staying.note(_event(), TENANT) == "its manifest keeps it where it is"
    migrating = DeviceLoss(_fleet(DeviceLossPolicy.MIGRATE, device_present=False), guard)
    assert migrating.note(_event(node="n9"), TENANT) == "not placed on that node"
    assert "tenant" in migrating.note(_event(), "globex")  # its topic names another tenant
    assert "no workload" in migrating.note(_event(workload=None), TENANT)
    assert migrating.note(_event(), TENANT) == "pending"
    assert list(migrating.pending) == [f"{TENANT}/w"]
    await migrating.tick(move)
    assert moves == [(TENANT, "w", MigrationTrigger.DEVICE_LOST)]
    assert not migrating.pending
    # the node's facts still have the device (a forged or stale event): nothing moves
    present = DeviceLoss(_fleet(DeviceLossPolicy.MIGRATE, device_present=True), guard)
    assert present.note(_event(), TENANT, now=0.0) == "pending"
    await present.tick(move, now=1.0)
    assert len(moves) == 1
    assert list(present.pending)
    await present.tick(move, now=1000.0)
    assert not present.pending  # unconfirmed for too long: dropped
    assert len(moves) == 1
