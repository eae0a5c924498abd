"""The view's rankings after a request's sync, on a fleet large enough for both ways of
patching them: a few nodes with a new heartbeat (each moved in place) and every node (the
ranking sorted afresh). Both give the ranking, the candidates and the plans of a view built
from scratch, for each data source whose ranking was kept."""

from __future__ import annotations

import dataclasses
import random

import pytest

from fogmesh.protocol.manifest import AppManifest
from fogmesh.protocol.node import Location, NodeFacts, Usage
from fogmesh.scheduler.placement import ClusterView, Constraints, NodeInfo, Planner, all_wants

NODES = 400
SOURCES = [Location(lat=50, lon=10), Location(lat=45, lon=0), None]


def _fleet(rnd: random.Random) -> list[NodeInfo]:
    fleet = []
    for i in range(NODES):
        mem = rnd.choice([2, 8]) * 2**30
        facts = NodeFacts(
            device_id=f"n{i:03d}", arch=rnd.choice(["x86_64", "aarch64"]), cpu_count=4,
            memory_bytes=mem, disk_bytes=2**34, runtimes=["docker"], labels={},
            location=Location(lat=rnd.uniform(40, 55), lon=rnd.uniform(-5, 20)),
        )  # fmt: skip
        fleet.append(NodeInfo(f"n{i:03d}", facts, usage=_usage(rnd, mem)))
    return fleet


def _usage(rnd: random.Random, mem: int) -> Usage:
    return Usage(
        cpu_percent=rnd.choice([0.0, 10.0, rnd.uniform(0, 90)]),
        memory_used_bytes=int(mem * rnd.uniform(0, 0.8)), memory_total_bytes=mem,
        disk_used_bytes=0, disk_total_bytes=2**34,
    )  # fmt: skip


def _manifest(source: Location | None) -> AppManifest:
    return AppManifest.model_validate({
        "name": "app",
        **({"data_source": source.model_dump()} if source else {}),
        "components": [{"name": "c", "image": "i", "replicas": 3,
                        "requests": {"cpu": "500m", "memory": "256Mi"},
                        "anti_affinity": ["c"]}],
    })  # fmt: skip


def _read(view: ClusterView) -> list[object]:
    out: list[object] = []
    for source in SOURCES:
        manifest = _manifest(source)
        cons = Constraints.of(manifest, manifest.components[0])
        out.append(list(view.candidates(cons, source)))
        out.append(Planner(view, manifest, "t").place(all_wants(manifest)).placements)
    return out


@pytest.mark.parametrize("beats", [3, 100, NODES])
def test_rankings_after_a_sync_equal_rebuilt(beats: int) -> None:
    """``beats`` nodes with a new heartbeat since the last request (3: each moved in place;
    100 and all: the ranking sorted afresh)."""
    rnd = random.Random(beats)
    view = ClusterView(_fleet(rnd))
    _read(view)  # every ranking kept
    for _ in range(3):
        new = set(rnd.sample(range(NODES), beats))
        fresh = [
            dataclasses.replace(n, usage=_usage(rnd, n.facts.memory_bytes))
            if i in new
            else dataclasses.replace(n)
            for i, n in enumerate(view.nodes)
        ]
        view.sync(fresh)
        assert _read(view) == _read(ClusterView(view.nodes))
