"""The view patched in place equals a view rebuilt from scratch, after every kind of change.

Heartbeats (usage), a node lost or back (liveness), new facts, a workload placed or gone, a
what-if adjustment undone and a node never seen before: after each, every table, every cache
that was filled before the change and the plans made on the view are the same as on a view
built afresh from the same nodes.
"""

from __future__ import annotations

import dataclasses
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
)
from tests.scheduler.test_placement_props import manifests, nodes

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

SOURCES = [None, Location(lat=10, lon=10)]


def _probe(view: ClusterView, manifest: AppManifest) -> dict[str, Any]:
    """Everything a plan reads from the view, filling its caches on the way."""
    out: dict[str, Any] = {
        "ids": [n.id for n in view.nodes],
        "tables": (
            view.cpu_cap,
            view.mem_cap,
            view.cpu_free,
            view.cpu_busy,
            view.mem_free,
            view.occupancy,
            view.app_occupancy,
            view.name_nodes,
        ),
        "latency": [view.latencies(s) for s in SOURCES],
    }
    for comp in manifest.components:
        cons = Constraints.of(manifest, comp)
        out[f"static {comp.name}"] = list(view.static_candidates(cons))
        for k, source in enumerate(SOURCES):
            out[f"ranked {comp.name} {k}"] = list(view.candidates(cons, source))
    plan = Planner(view, manifest, "t1").place(all_wants(manifest), partial=True)
    out["plan"] = (list(plan.placements.items()), plan.failures)
    return out


def _same_as_rebuilt(view: ClusterView, manifest: AppManifest) -> None:
    fresh = ClusterView(view.nodes)
    assert _probe(view, manifest) == _probe(fresh, manifest)


changes = st.lists(
    st.tuples(
        st.sampled_from(
            ["heartbeat", "lost", "back", "facts", "place", "gone", "what-if", "new", "sync"]
        ),
        st.integers(min_value=0, max_value=20),
        st.floats(min_value=0, max_value=100),
    ),
    min_size=1,
    max_size=12,
)


def _apply(view: ClusterView, change: tuple[str, int, float], manifest: AppManifest) -> None:
    kind, pick, amount = change
    if kind == "new" or not view.nodes:
        template = view.nodes[0].facts if view.nodes else None
        if template is None:
            return
        view.upsert(NodeInfo(f"node-new-{pick:02d}-{len(view)}", template))
        return
    node = view.nodes[pick % len(view.nodes)]
    if kind == "heartbeat":
        usage = Usage(
            cpu_percent=amount,
            memory_used_bytes=int(node.facts.memory_bytes * amount / 100),
            memory_total_bytes=node.facts.memory_bytes,
            disk_used_bytes=0,
            disk_total_bytes=1,
        )
        view.upsert(dataclasses.replace(node, usage=usage))
    elif kind == "lost":
        view.upsert(dataclasses.replace(node, liveness=Liveness.OFFLINE))
    elif kind == "back":
        view.upsert(dataclasses.replace(node, liveness=Liveness.ONLINE))
    elif kind == "facts":
        labels = {**node.facts.labels, "zone": ["north", "south", "east"][pick % 3]}
        loc = Location(lat=amount / 2, lon=amount) if pick % 2 else None
        facts = node.facts.model_copy(update={"labels": labels, "location": loc})
        view.upsert(dataclasses.replace(node, facts=facts))
    elif kind == "place":
        view.add_workload(node.id, _workload(pick, amount))
    elif kind == "sync":
        # the scheduler's request path: the whole fleet handed over, one node's picture new
        fleet = [
            dataclasses.replace(n, workloads=list(reversed(n.workloads)), usage=None)
            if n is node
            else dataclasses.replace(n)
            for n in view.nodes
        ]
        if pick % 4 == 0:
            fleet = [n for n in fleet if n.id != node.id]  # a node gone from the tracker
        assert view.sync(fleet) is view
    elif kind == "gone":
        if node.workloads:
            view.remove_workload(node.id, node.workloads[pick % len(node.workloads)])
    else:
        before = _probe(view, manifest)
        extra = [(node.id, _workload(pick, amount))]
        with view.adjusted(remove=[(node.id, w) for w in node.workloads], add=extra) as what_if:
            _same_as_rebuilt(what_if, manifest)
        assert _probe(view, manifest) == before


def _workload(pick: int, amount: float) -> PlacedWorkload:
    return PlacedWorkload(
        f"app-c{pick % 3}-{pick}", "t1", "app", f"c{pick % 3}", amount / 50, int(amount) * 2**22
    )


@SETTINGS
@given(nodes(), manifests(), changes)
def test_patched_view_equals_rebuilt(
    fleet: list[NodeInfo], manifest: AppManifest, steps: list[tuple[str, int, float]]
) -> None:
    view = ClusterView(fleet)
    _probe(view, manifest)  # fill the caches, so the changes below must patch them
    for step in steps:
        _apply(view, step, manifest)
        _same_as_rebuilt(view, manifest)


def test_a_placement_reserves_at_once_and_its_removal_frees() -> None:
    manifest = AppManifest.model_validate(
        {
            "name": "app",
            "components": [{"name": "c0", "image": "img", "requests": {"cpu": 1, "memory": 2**28}}],
        }
    )
    view = ClusterView(_two_nodes())
    first = Planner(view, manifest, "t1").place(all_wants(manifest)).placements["app-c0-0"]
    workload = PlacedWorkload("app-c0-0", "t1", "app", "c0", 1.0, 2**28)
    view.add_workload(first, workload)
    i = view.index[first]
    assert view.cpu_free[i] == view.cpu_cap[i] - 1.0
    # the same name cannot land on the same node again, and the other node is now cheaper
    again = Planner(view, manifest, "t1").place(all_wants(manifest)).placements["app-c0-0"]
    assert again != first
    view.remove_workload(first, workload)
    assert view.cpu_free[i] == view.cpu_cap[i]
    assert Planner(view, manifest, "t1").place(all_wants(manifest)).placements["app-c0-0"] == first
    _same_as_rebuilt(view, manifest)


def _two_nodes() -> list[NodeInfo]:
    facts = NodeFacts(
        device_id="d", arch="x86_64", cpu_count=4, memory_bytes=2**32, disk_bytes=1,
        runtimes=["docker"],
    )  # fmt: skip
    return [NodeInfo("node-a", facts), NodeInfo("node-b", facts)]
