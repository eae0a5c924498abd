"""Placement decisions per second over a view of 10,000 nodes, beside the previous algorithm.

A decision places one workload (one replica of one component); each plan's placements are
committed to the view at once (``ClusterView.add_workload``), as the scheduler does, so later apps
see earlier ones. Three figures, each measured for the current planner and for the previous one
(a full scan of every passing node per decision, constraints judged node by node) in the same
run, interleaved, both on views built from the same fleet; their plans must be identical:

* ``warm``: apps whose constraint sets were seen before on this view (the usual case).
* ``cold``: every app has a constraint set never seen on the view, so each decision also
  filters all 10,000 nodes by label expression, arch, runtime and location.
* ``unconstrained``: the convolve component has no arch or label constraint (only the latency
  budget filters, so every node passes).

And what keeping the view costs: ``heartbeat_update_us`` (one node's usage patched in place),
``request_sync_s`` (a request's picture of all 10,000 nodes handed to the kept view, 1% of them
with a new heartbeat since the last request, as the scheduler's requests do;
``request_sync_all_new_s`` with every node's heartbeat new) beside
``view_build_s`` (the whole view rebuilt, as every request did before).

Run: ``.venv/bin/python bench/scheduler.py`` (writes ``bench/results/scheduler.json``).
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Iterable
from typing import Any

from _common import load_average, write_result

from fogmesh.protocol.manifest import AppManifest
from fogmesh.protocol.node import Location, NodeFacts, Usage
from fogmesh.scheduler.placement import (
    ClusterView,
    Constraints,
    NodeInfo,
    PlacedWorkload,
    Planner,
    Want,
    all_wants,
)
from fogmesh.scheduler.placement.cost import MIN_REMAINING, spread_factor

NODES = 10_000
HEARTBEATS = 5_000
ROUNDS = 2


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


class ScanView(ClusterView):
    """The previous filter: every constraint judged on every node, nothing shared by profile."""

    def static_candidates(self, cons: Constraints) -> list[int]:
        """Indices of the nodes whose facts pass ``cons``, judged one node at a time."""
        key = ("scan", cons.key())
        found = self._scan.get(key)
        if found is None:
            found = [i for i, node in enumerate(self.nodes) if cons.reason(node) is None]
            self._scan[key] = found
        return found

    def __init__(self, nodes: Iterable[NodeInfo]) -> None:
        super().__init__(nodes)
        self._scan: dict[tuple[object, ...], list[int]] = {}


class ScanPlanner(Planner):
    """The previous decision: a cost for every passing node, lowest wins (ties: lowest id)."""

    def _choose(self, want: Want, excluded: set[int]) -> int | None:
        comp = self.manifest.component(want.component)
        name = f"{self.manifest.name}-{comp.name}-{want.replica}"
        candidates = self.view.static_candidates(self._constraints[comp.name])
        banned, required = self._conflicts(comp, name)
        banned |= excluded
        if required is not None:
            candidates = [i for i in candidates if i in required]
        touched = {
            i: spread_factor(self.occ[comp.name].get(i, 0), count)
            for i, count in self.app_occ.items()
        }
        for i in banned:
            touched[i] = -1.0
        creq, mreq = comp.cpu_request, float(comp.memory_request)
        latency = self.view.latencies(self.manifest.data_source)
        best_cost, best = float("inf"), None
        for i in candidates:
            cpu_free, mem_free = self.free(i)
            cpu_left = cpu_free - creq
            if cpu_left < -1e-9:
                continue
            mem_left = mem_free - mreq
            if mem_left < 0:
                continue
            cap = self.view.cpu_cap[i]
            remaining = (cpu_left - self.view.cpu_busy[i]) / cap if cap > 0 else 0.0
            cap = self.view.mem_cap[i]
            remaining = min(remaining, mem_left / cap if cap > 0 else 0.0)
            cost = latency[i] / max(remaining, MIN_REMAINING)
            factor = touched.get(i)
            if factor is not None:
                if factor < 0:
                    continue
                cost *= factor
            if cost < best_cost:
                best_cost, best = cost, i
        return best


def commit(view: ClusterView, manifest: AppManifest, placements: dict[str, str]) -> None:
    """Take a plan's placements into the view at once, as the scheduler does."""
    for name, node in placements.items():
        comp = manifest.component(name.removeprefix(f"{manifest.name}-").rsplit("-", 1)[0])
        view.add_workload(
            node,
            PlacedWorkload(
                name, "bench", manifest.name, comp.name, comp.cpu_request, comp.memory_request
            ),
        )


def run(
    manifests: list[AppManifest], view: ClusterView, planner: type[Planner]
) -> tuple[int, float, list[dict[str, str]]]:
    """Plan and commit each app on ``view``; return (decisions, seconds, plans)."""
    decisions, plans = 0, []
    elapsed = 0.0
    for manifest in manifests:
        start = time.perf_counter()
        plan = planner(view, manifest, "bench").place(all_wants(manifest))
        elapsed += time.perf_counter() - start
        assert plan.ok, plan.failures[:1]
        decisions += len(plan.placements)
        plans.append(plan.placements)
        commit(view, manifest, plan.placements)
    return decisions, elapsed, plans


def heartbeat_cost(view: ClusterView, rnd: random.Random) -> float:
    """Mean seconds to patch one node's usage into ``view`` (a heartbeat)."""
    ids = [n.id for n in view.nodes]
    beats = []
    for _ in range(HEARTBEATS):
        node = view.nodes[view.index[rnd.choice(ids)]]
        assert node.usage is not None
        usage = node.usage.model_copy(update={"cpu_percent": rnd.uniform(0, 60)})
        beats.append(dataclasses.replace(node, usage=usage))
    start = time.perf_counter()
    for info in beats:
        view.upsert(info)
    return (time.perf_counter() - start) / HEARTBEATS


def sync_cost(view: ClusterView, rnd: random.Random, share: float = 0.01) -> float:
    """Seconds for one request's sync: every node handed over afresh, ``share`` of them with
    new usage."""
    fresh = []
    for node in view.nodes:
        usage = node.usage
        if usage is not None and rnd.random() < share:
            usage = usage.model_copy(update={"cpu_percent": rnd.uniform(0, 60)})
        fresh.append(dataclasses.replace(node, usage=usage, workloads=list(node.workloads)))
    start = time.perf_counter()
    view.sync(fresh)
    return time.perf_counter() - start


def main() -> None:
    """Run the benchmark, print the table and write ``bench/results/scheduler.json``."""
    fleet = make_fleet(NODES, random.Random(42))
    start = time.perf_counter()
    views = {"current": ClusterView(fleet)}
    build_s = time.perf_counter() - start
    views["previous"] = ScanView(fleet)
    planners: dict[str, type[Planner]] = {"current": Planner, "previous": ScanPlanner}
    scenarios = {
        "warm": (100, False, False),
        "cold": (20, True, False),
        "unconstrained": (50, False, True),
    }
    totals = {(s, a): [0, 0.0] for s in scenarios for a in planners}
    serial = 0
    for _ in range(ROUNDS):
        for scenario, (apps, unique, open_) in scenarios.items():
            if not unique:  # warm the constraint and latency caches on both views
                serial += 1
                for algo, planner in planners.items():
                    warmup = [make_manifest(serial, unique_constraints=False, open_=open_)]
                    run(warmup, views[algo], planner)
            manifests = [
                make_manifest(serial + k + 1, unique_constraints=unique, open_=open_)
                for k in range(apps)
            ]
            serial += apps
            plans = {}
            for algo, planner in planners.items():  # interleaved: both see the same load
                n, secs, plans[algo] = run(manifests, views[algo], planner)
                totals[scenario, algo][0] += n
                totals[scenario, algo][1] += secs
            assert plans["current"] == plans["previous"], f"{scenario}: plans differ"
    rates = {k: round(n / secs) for k, (n, secs) in totals.items()}
    hb_s = heartbeat_cost(views["current"], random.Random(7))
    sync_s = min(sync_cost(views["current"], random.Random(k)) for k in range(3))
    sync_all_s = min(sync_cost(views["current"], random.Random(k), 1.0) for k in range(3))
    load = load_average()
    print(f"scheduler: {NODES} nodes, load average {load}")
    print(f"{'placements/s':<16}{'current':>10}{'previous':>10}")
    for scenario in scenarios:
        print(f"{scenario:<16}{rates[scenario, 'current']:>10}{rates[scenario, 'previous']:>10}")
    print(
        f"heartbeat update {hb_s * 1e6:.1f} us; request sync {sync_s * 1e3:.1f} ms "
        f"(every node new: {sync_all_s * 1e3:.1f} ms); whole view rebuilt {build_s:.3f} s"
    )
    result: dict[str, Any] = {
        "nodes": NODES,
        "placements_per_s": {s: rates[s, "current"] for s in scenarios},
        "baseline_placements_per_s": {s: rates[s, "previous"] for s in scenarios},
        "decisions": {s: totals[s, "current"][0] for s in scenarios},
        "heartbeat_update_us": round(hb_s * 1e6, 2),
        "request_sync_s": round(sync_s, 4),
        "request_sync_all_new_s": round(sync_all_s, 4),
        "view_build_s": round(build_s, 4),
        "goal_per_s": {"warm": 500, "cold": 200},
        "load_average": load,
    }
    write_result("scheduler", result)


if __name__ == "__main__":
    main()
