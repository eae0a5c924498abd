"""Exclusive by default: the planner never gives one device to two workloads on a node,
unless the node's config marks it shared; the refusal names the held device as the reason."""

from __future__ import annotations

from fogmesh.protocol.manifest import AppManifest
from fogmesh.protocol.node import DeviceInfo
from fogmesh.scheduler.placement import ClusterView, NodeInfo, PlacedWorkload, Planner, all_wants
from tests.devices.conftest import device_node

PORT = "serial:ttyUSB0"


def _node(node_id: str, *, shared: bool = False, holders: int = 0) -> NodeInfo:
    info = DeviceInfo(name=PORT, path="/dev/ttyUSB0", kind="serial", shared=shared)
    held = [
        PlacedWorkload(f"old-c-{i}", "t0", "old", "c", devices=("/dev/ttyUSB0",))
        for i in range(holders)
    ]
    return device_node(node_id, info, held)


def _manifest(replicas: int) -> AppManifest:
    return AppManifest.model_validate(
        {
            "name": "app",
            "components": [
                {"name": "reader", "image": "img", "replicas": replicas},
            ],
            "placement": {"devices": [PORT]},
        }
    )


def test_one_device_one_workload_unless_shared() -> None:
    """Two replicas wanting the one port of each node land on two nodes; a third finds none;
    a node already holding it (by its path) is refused; a shared port takes them all."""
    two = Planner(ClusterView([_node("a"), _node("b")]), _manifest(2), "t").place(
        all_wants(_manifest(2))
    )
    assert two.ok
    assert sorted(two.placements.values()) == ["a", "b"]

    three = Planner(ClusterView([_node("a"), _node("b")]), _manifest(3), "t").place(
        all_wants(_manifest(3))
    )
    assert not three.ok
    assert three.failures[0].reason_counts == {"device": 2}

    held = Planner(ClusterView([_node("a", holders=1), _node("b")]), _manifest(1), "t").place(
        all_wants(_manifest(1))
    )
    assert held.placements == {"app-reader-0": "b"}

    shared = Planner(ClusterView([_node("a", shared=True, holders=1)]), _manifest(3), "t")
    assert shared.place(all_wants(_manifest(3))).placements == {
        f"app-reader-{i}": "a" for i in range(3)
    }
