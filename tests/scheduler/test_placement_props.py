"""Properties of the placement engine: constraints hold, no overcommit, determinism."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fogmesh.protocol.manifest import AppManifest
from fogmesh.protocol.node import Location, NodeFacts, Usage
from fogmesh.scheduler.placement import (
    ClusterView,
    Constraints,
    Liveness,
    NodeInfo,
    PlacedWorkload,
    Planner,
    all_wants,
    workload_name,
)

ARCHES = ["x86_64", "aarch64", "armv7l"]
ZONES = ["north", "south", "east"]
EXPRS = [
    None,
    "zone == north",
    "zone in (north, south)",
    "gpu exists",
    "zone != east and tier exists",
    "not gpu exists or zone == south",
]


@st.composite
def nodes(draw: st.DrawFn) -> list[NodeInfo]:
    count = draw(st.integers(min_value=0, max_value=12))
    out = []
    for i in range(count):
        labels = {"zone": draw(st.sampled_from(ZONES))}
        if draw(st.booleans()):
            labels["gpu"] = "1"
        if draw(st.booleans()):
            labels["tier"] = "edge"
        cpu = draw(st.integers(min_value=1, max_value=8))
        mem = draw(st.integers(min_value=1, max_value=16)) * 2**28
        usage = None
        if draw(st.booleans()):
            usage = Usage(
                cpu_percent=draw(st.floats(min_value=0, max_value=100)),
                memory_used_bytes=draw(st.integers(min_value=0, max_value=mem)),
                memory_total_bytes=mem,
                disk_used_bytes=0,
                disk_total_bytes=1,
            )
        placed = [
            PlacedWorkload(f"other-w-{i}-{k}", "t2", "other", "w", cpu=0.5, memory=2**27)
            for k in range(draw(st.integers(min_value=0, max_value=2)))
        ]
        loc = None
        if draw(st.booleans()):
            loc = Location(lat=draw(st.floats(-60, 60)), lon=draw(st.floats(-170, 170)))
        facts = NodeFacts(
            device_id=f"n{i}",
            arch=draw(st.sampled_from(ARCHES)),
            cpu_count=cpu,
            memory_bytes=mem,
            disk_bytes=2**34,
            labels=labels,
            runtimes=draw(st.sampled_from([["docker"], ["native"], ["docker", "native"]])),
            devices=draw(st.sampled_from([[], ["/dev/ttyUSB0"]])),
            location=loc,
        )
        liveness = draw(st.sampled_from([Liveness.ONLINE] * 4 + [Liveness.STALE, Liveness.OFFLINE]))
        out.append(NodeInfo(f"node-{i:02d}", facts, liveness, usage, placed))
    return out


@st.composite
def manifests(draw: st.DrawFn) -> AppManifest:
    n_comp = draw(st.integers(min_value=1, max_value=3))
    names = [f"c{k}" for k in range(n_comp)]
    comps: list[dict[str, Any]] = []
    for k, name in enumerate(names):
        placement: dict[str, Any] = {}
        if draw(st.booleans()):
            placement["arch"] = draw(st.lists(st.sampled_from(ARCHES), min_size=1, max_size=2))
        expr = draw(st.sampled_from(EXPRS))
        if expr:
            placement["labels"] = expr
        if draw(st.integers(0, 4)) == 0:
            placement["devices"] = ["/dev/ttyUSB0"]
        if draw(st.integers(0, 4)) == 0:
            placement["near"] = {
                "lat": 0,
                "lon": 0,
                "radius_km": draw(st.sampled_from([500, 5000])),
            }
        if draw(st.integers(0, 6)) == 0:
            placement["node"] = f"node-{draw(st.integers(0, 12)):02d}"
        comps.append(
            {
                "name": name,
                "runtime": draw(st.sampled_from(["docker", "native"])),
                "image": "img",
                "executable": "/bin/app",
                "replicas": draw(st.integers(min_value=0, max_value=4)),
                "requests": {
                    "cpu": draw(st.sampled_from([0, 0.25, 0.5, 1, 2])),
                    "memory": draw(st.sampled_from([0, 2**26, 2**28, 2**30])),
                },
                "placement": placement,
                "anti_affinity": draw(st.lists(st.sampled_from(names), max_size=2, unique=True)),
                "affinity": [n for n in names[:k] if draw(st.integers(0, 3)) == 0],
            }
        )
    data: dict[str, Any] = {"name": "app", "components": comps}
    if draw(st.booleans()):
        data["data_source"] = {"lat": 10, "lon": 10}
        if draw(st.booleans()):
            data["latency_budget_ms"] = draw(st.sampled_from([5.0, 40.0, 200.0]))
    return AppManifest.model_validate(data)


SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _check_plan(fleet: list[NodeInfo], manifest: AppManifest) -> None:
    view = ClusterView(fleet)
    plan = Planner(view, manifest, "t1").place(all_wants(manifest))
    by_id = {n.id: n for n in fleet}
    added: dict[str, list[tuple[str, int]]] = {}
    for name, node_id in plan.placements.items():
        app, comp_name, replica = name.rsplit("-", 2)
        assert app == manifest.name
        comp = manifest.component(comp_name)
        node = by_id[node_id]
        # every hard constraint on the node's facts holds, and the node is online
        assert Constraints.of(manifest, comp).reason(node) is None
        assert node.liveness is Liveness.ONLINE
        added.setdefault(node_id, []).append((comp_name, int(replica)))
    for node_id, items in added.items():
        i = view.index[node_id]
        comps = [manifest.component(c) for c, _ in items]
        # no overcommit: requests of new workloads fit in what was free
        assert sum(c.cpu_request for c in comps) <= view.cpu_free[i] + 1e-6
        assert sum(c.memory_request for c in comps) <= view.mem_free[i]
        names = {c.name for c in comps}
        for comp in comps:
            # anti-affinity, both directions (self means one replica per node)
            anti = set(comp.anti_affinity)
            clash = [c for c, _ in items if c in anti]
            assert len(clash) <= (1 if comp.name in anti else 0)
            # affinity: every target with replicas shares the node
            for target in comp.affinity:
                if manifest.component(target).replicas > 0:
                    assert target in names
        workload_names = [workload_name("app", c, r) for c, r in items]
        assert len(set(workload_names)) == len(workload_names)
    if plan.ok:
        assert len(plan.placements) == len(all_wants(manifest))
    else:
        failure = plan.failures[0]
        assert len(failure.reasons) == len(fleet)
        assert sum(failure.reason_counts.values()) == max(len(fleet), 1)


@SETTINGS
@given(nodes(), manifests())
def test_no_placement_breaks_a_constraint_or_overcommits(
    fleet: list[NodeInfo], manifest: AppManifest
) -> None:
    _check_plan(fleet, manifest)


@SETTINGS
@given(nodes(), manifests(), st.randoms(use_true_random=False))
def test_same_input_same_placement(
    fleet: list[NodeInfo], manifest: AppManifest, rnd: random.Random
) -> None:
    first = Planner(ClusterView(fleet), manifest, "t1").place(all_wants(manifest))
    shuffled = list(fleet)
    rnd.shuffle(shuffled)
    second = Planner(ClusterView(shuffled), manifest, "t1").place(all_wants(manifest))
    assert list(first.placements.items()) == list(second.placements.items())
    assert first.failures == second.failures


class _FullScanView(ClusterView):
    """The view without its ranking: every passing node, by id, with a bound that never stops
    the scan (the planner before the ranking)."""

    def candidates(self, cons: Constraints, source: Location | None) -> Iterator[tuple[float, int]]:
        for i in self.static_candidates(cons):
            yield 0.0, i


@SETTINGS
@given(nodes(), manifests())
def test_ranked_scan_places_as_a_full_scan(fleet: list[NodeInfo], manifest: AppManifest) -> None:
    ranked = Planner(ClusterView(fleet), manifest, "t1").place(all_wants(manifest), partial=True)
    full = Planner(_FullScanView(fleet), manifest, "t1").place(all_wants(manifest), partial=True)
    assert list(ranked.placements.items()) == list(full.placements.items())
    assert ranked.failures == full.failures
