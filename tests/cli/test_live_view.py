"""``fogmesh up``'s live view, fed by a real broker: liveness changes and workload moves show
as they happen, and a lost node's last report is not counted as running."""

from __future__ import annotations

from fogmesh.bus import Bus
from fogmesh.cli.fleet.live import FleetView
from fogmesh.protocol import (
    ActualState,
    Event,
    EventKind,
    NodeLiveness,
    NodeStateMessage,
    RuntimeKind,
    WorkloadPhase,
    WorkloadStatus,
    topics,
)
from fogmesh.protocol.events import MigrationData, NodeEventData, ReplacedData
from fogmesh.protocol.topics import NodeChannel
from tests.support.brokers import BrokerProcess
from tests.support.buses import bus_config, eventually


def _convolver() -> WorkloadStatus:
    return WorkloadStatus(
        name="sensor-app-convolve-0",
        tenant="demo",
        app="sensor-app",
        component="convolve",
        runtime=RuntimeKind.NATIVE,
        phase=WorkloadPhase.RUNNING,
    )


async def test_the_view_shows_a_node_lost_and_its_workload_moved(
    amqtt_broker: BrokerProcess,
) -> None:
    notes: list[str] = []
    view = FleetView("demo", "sensor-app", on_note=notes.append)
    async with Bus(bus_config(amqtt_broker)) as watcher, Bus(bus_config(amqtt_broker)) as fleet:
        view.attach(watcher)
        await watcher.wait_connected(timeout=15)
        await fleet.wait_connected(timeout=15)
        for node in ("edge-1", "edge-2"):
            online = NodeStateMessage(node=node, state=NodeLiveness.ONLINE)
            await fleet.publish(topics.node(node, NodeChannel.STATE), online, qos=1)
        actual = ActualState(node="edge-1", observed_generation=1, workloads=[_convolver()])
        await fleet.publish(topics.node("edge-1", NodeChannel.ACTUAL), actual, qos=1)
        await eventually(lambda: len(view.workloads()) == 1, what="the convolver runs")
        assert view.online() == {"edge-1", "edge-2"}

        lost = Event.of(
            EventKind.NODE_LOST, NodeEventData(reason="missed-heartbeats"), node="edge-1"
        )
        await fleet.publish(topics.fleet_event(EventKind.NODE_LOST), lost, qos=1)
        moved = Event.of(
            EventKind.REPLACED,
            ReplacedData.model_validate({"from": "edge-1", "to": "edge-2"}),
            app="sensor-app",
            workload="sensor-app-convolve-0",
        )
        await fleet.publish(topics.tenant_event("demo", EventKind.REPLACED), moved, qos=1)
        migrated = Event.of(
            EventKind.MIGRATION_FINISHED,
            MigrationData.model_validate(
                {"trigger": "by-hand", "from": "edge-2", "to": "edge-1", "freeze_s": 0.25}
            ),
            workload="sensor-app-convolve-0",
        )
        topic = topics.tenant_event("demo", EventKind.MIGRATION_FINISHED)
        await fleet.publish(topic, migrated, qos=1)
        await eventually(lambda: len(notes) == 3, what=f"three notes, not {notes}")

        # a silent death leaves the node's own state "online": the registry's word counts
        assert view.online() == {"edge-2"}
        assert view.workloads() == []
        assert notes == [
            "node-lost edge-1 (missed-heartbeats)",
            "workload-replaced sensor-app-convolve-0: edge-1 -> edge-2",
            "migration-finished sensor-app-convolve-0: edge-2 -> edge-1 (by-hand, frozen 0.25 s)",
        ]

        back = NodeStateMessage(node="edge-1", state=NodeLiveness.ONLINE)
        await fleet.publish(topics.node("edge-1", NodeChannel.STATE), back, qos=1)
        await eventually(lambda: "edge-1" in view.online(), what="edge-1 back")
        view.render()  # the four tables render with every kind of row
