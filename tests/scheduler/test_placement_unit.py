"""Hand-made placement cases: cost, spread, affinity, reasons."""

from __future__ import annotations

from typing import Any

from fogmesh.protocol.manifest import AppManifest
from fogmesh.protocol.node import Location, NodeFacts
from fogmesh.scheduler.placement import (
    ClusterView,
    Liveness,
    NodeInfo,
    PlacedWorkload,
    Planner,
    all_wants,
)


def node(
    node_id: str,
    *,
    cpu: int = 4,
    mem_gib: int = 8,
    lat: float | None = None,
    labels: dict[str, str] | None = None,
    liveness: Liveness = Liveness.ONLINE,
    workloads: list[PlacedWorkload] | None = None,
) -> NodeInfo:
    facts = NodeFacts(
        device_id=node_id,
        arch="x86_64",
        cpu_count=cpu,
        memory_bytes=mem_gib * 2**30,
        disk_bytes=2**35,
        labels=labels or {},
        runtimes=["docker", "native"],
        location=None if lat is None else Location(lat=lat, lon=0),
    )
    return NodeInfo(node_id, facts, liveness, None, workloads or [])


def manifest(*components: dict[str, Any], **app: Any) -> AppManifest:
    comps = [{"image": "img", **c} for c in components]
    return AppManifest.model_validate({"name": "app", "components": comps, **app})


def plan(nodes: list[NodeInfo], m: AppManifest) -> dict[str, str]:
    result = Planner(ClusterView(nodes), m, "t").place(all_wants(m))
    assert result.ok, result.failures
    return result.placements


def test_prefers_the_node_near_the_data_source() -> None:
    nodes = [node("far", lat=40), node("near", lat=1), node("nowhere")]
    m = manifest({"name": "c"}, data_source={"lat": 0, "lon": 0})
    assert plan(nodes, m) == {"app-c-0": "near"}


def test_prefers_remaining_capacity_then_lowest_id() -> None:
    busy = [PlacedWorkload("x-y-0", "t2", "x", "y", cpu=3, memory=2**30)]
    nodes = [node("a", workloads=busy), node("b"), node("c")]
    assert plan(nodes, manifest({"name": "c"})) == {"app-c-0": "b"}


def test_replicas_spread_across_nodes() -> None:
    nodes = [node("a"), node("b"), node("c")]
    got = plan(nodes, manifest({"name": "c", "replicas": 3}))
    assert sorted(got.values()) == ["a", "b", "c"]


def test_anti_affinity_puts_components_apart_and_affinity_together() -> None:
    nodes = [node("a"), node("b")]
    m = manifest(
        {"name": "sensor", "anti_affinity": ["convolve"]},
        {"name": "convolve"},
        {"name": "sidecar", "affinity": ["convolve"]},
    )
    got = plan(nodes, m)
    assert got["app-sensor-0"] != got["app-convolve-0"]
    assert got["app-sidecar-0"] == got["app-convolve-0"]


def test_unschedulable_lists_a_reason_for_each_node() -> None:
    nodes = [
        node("small", cpu=1),
        node("down", liveness=Liveness.OFFLINE),
        node("wrong", labels={"zone": "south"}),
    ]
    m = manifest({"name": "c", "requests": {"cpu": 2}, "placement": {"labels": "zone != south"}})
    result = Planner(ClusterView(nodes), m, "t").place(all_wants(m))
    assert not result.ok
    reasons = result.failures[0].reasons
    assert reasons["small"].startswith("cpu:")
    assert reasons["down"] == "node is offline"
    assert reasons["wrong"].startswith("labels:")
    assert result.failures[0].reason_counts == {"cpu": 1, "node is offline": 1, "labels": 1}


def test_same_workload_name_never_lands_twice_on_a_node() -> None:
    old = [PlacedWorkload("app-c-0", "t", "app", "c", cpu=0.1, memory=1, version="1")]
    nodes = [node("a", workloads=old), node("b")]
    m = manifest({"name": "c"}, version="2")
    assert plan(nodes, m) == {"app-c-0": "b"}


def test_another_tenants_equal_name_does_not_ban_a_node() -> None:
    """Names clash per tenant: another tenant's ``app-c-0`` on ``a`` neither blocks nor shows."""
    theirs = [PlacedWorkload("app-c-0", "other", "app", "c", cpu=0.1, memory=1, version="1")]
    nodes = [node("a", workloads=theirs), node("b", cpu=2)]
    assert plan(nodes, manifest({"name": "c"})) == {"app-c-0": "a"}


def test_the_sample_app_manifest_loads_and_places() -> None:
    from pathlib import Path

    from fogmesh.protocol.manifest import load_manifest_text

    text = (Path(__file__).resolve().parents[2] / "deploy/examples/sensor-app.yaml").read_text()
    m = load_manifest_text(text, tenant="acme")
    assert m.tenant == "acme"
    assert [c.name for c in m.components] == ["sensor", "convolve"]
    nodes = [
        node("gw", lat=48.1, labels={"role": "sensor-gateway"}),
        node("e1", lat=48.2, labels={"tier": "edge"}),
        node("e2", lat=48.3, labels={"tier": "fog"}),
    ]
    got = plan(nodes, m)
    assert got["sensor-app-sensor-0"] == "gw"
    assert {got["sensor-app-convolve-0"], got["sensor-app-convolve-1"]} == {"e1", "e2"}
