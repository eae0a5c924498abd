"""Placement decisions per second over a view of 10,000 nodes.

A decision places one workload (one replica of one component). Three figures:

* ``warm``: apps whose constraint sets were seen before on this view (the usual case: the view
  caches, per constraint set, the nodes whose facts pass); every decision still scans every
  passing node for free resources, anti-affinity and cost.
* ``cold``: every app has a constraint set never seen on the view, so each decision also
  evaluates the label expression, arch, runtime and location of all 10,000 nodes.
* ``warm_unconstrained``: like warm, but the convolve component has no arch or label
  constraint, so every decision scans all 10,000 nodes (only the latency budget filters).
* ``view_build_s``: building the indexed view from 10,000 node records.

Run: ``.venv/bin/python bench/scheduler.py`` (writes ``bench/results/scheduler.json``).
"""

from __future__ import annotations

import json
import platform
import random
import time
from pathlib import Path
from typing import Any

from fogmesh.protocol.manifest import AppManifest
from fogmesh.protocol.node import Location, NodeFacts, Usage
from fogmesh.scheduler.placement import ClusterView, NodeInfo, PlacedWorkload, Planner, all_wants

NODES = 10_000
RESULTS = Path(__file__).resolve().parent / "results" / "scheduler.json"


def make_fleet(count: int, rnd: random.Random) -> list[NodeInfo]:
    """A fleet with mixed arches, zones, locations, usage and a few workloads per node."""
    fleet = []
    for i in range(count):
        cpu = rnd.choice([2, 4, 8, 16])
        mem = rnd.choice([2, 4, 8, 32]) * 2**30
        facts = NodeFacts(
            device_id=f"node-{i:05d}",
            arch=rnd.choice(["x86_64", "aarch64"]),
            cpu_count=cpu,
            memory_bytes=mem,
            disk_bytes=2**36,
            labels={"zone": rnd.choice(["north", "south", "east", "west"]), "tier": "edge"},
            runtimes=["docker", "native"],
            location=Location(lat=rnd.uniform(40, 60), lon=rnd.uniform(-5, 25)),
        )
        usage = Usage(
            cpu_percent=rnd.uniform(0, 60),
            memory_used_bytes=int(mem * rnd.uniform(0, 0.6)),
            memory_total_bytes=mem,
            disk_used_bytes=0,
            disk_total_bytes=2**36,
        )
        placed = [
            PlacedWorkload(f"bg{i}-w-{k}", "bg", f"bg{i}", "w", cpu=0.25, memory=2**27)
            for k in range(rnd.randint(0, 3))
        ]
        fleet.append(NodeInfo(f"node-{i:05d}", facts, usage=usage, workloads=placed))
    return fleet


def make_manifest(n: int, *, unique_constraints: bool, open_: bool = False) -> AppManifest:
    """A sensor -> convolve app, 3 replicas of convolve spread and kept off the sensor."""
    zone = f"zone in (north, south, z{n})" if unique_constraints else "zone in (north, south)"
    doc: dict[str, Any] = {
        "name": f"app{n}",
        "data_source": {"lat": 50.0, "lon": 10.0},
        "latency_budget_ms": 20,
        "components": [
            {"name": "sensor", "image": "fogmesh/sample-app:latest", "requests": {"cpu": "100m"}},
            {
                "name": "convolve",
                "image": "fogmesh/sample-app:latest",
                "replicas": 3,
                "requests": {"cpu": "500m", "memory": "256Mi"},
                "placement": {} if open_ else {"arch": ["x86_64"], "labels": zone},
                "anti_affinity": ["sensor", "convolve"],
            },
        ],
    }
    return AppManifest.model_validate(doc)


def run(apps: int, view: ClusterView, *, unique: bool, open_: bool = False) -> tuple[int, float]:
    """Plan ``apps`` apps on ``view``; return (decisions, seconds)."""
    manifests = [make_manifest(n, unique_constraints=unique, open_=open_) for n in range(apps)]
    decisions = 0
    start = time.perf_counter()
    for manifest in manifests:
        plan = Planner(view, manifest, "bench").place(all_wants(manifest))
        assert plan.ok, plan.failures[:1]
        decisions += len(plan.placements)
    return decisions, time.perf_counter() - start


def main() -> None:
    """Run the benchmark, print the figures and write them as JSON."""
    rnd = random.Random(42)
    fleet = make_fleet(NODES, rnd)
    start = time.perf_counter()
    view = ClusterView(fleet)
    build_s = time.perf_counter() - start
    run(1, view, unique=False)  # warm the constraint and latency caches
    warm_n, warm_s = run(100, view, unique=False)
    cold_n, cold_s = run(20, view, unique=True)
    run(1, view, unique=False, open_=True)
    open_n, open_s = run(50, view, unique=False, open_=True)
    result = {
        "nodes": NODES,
        "view_build_s": round(build_s, 4),
        "warm": {"decisions": warm_n, "seconds": round(warm_s, 4), "per_s": round(warm_n / warm_s)},
        "cold": {"decisions": cold_n, "seconds": round(cold_s, 4), "per_s": round(cold_n / cold_s)},
        "warm_unconstrained": {
            "decisions": open_n,
            "seconds": round(open_s, 4),
            "per_s": round(open_n / open_s),
        },
        "goal_per_s": 100,
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
    print(json.dumps(result, indent=2))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
