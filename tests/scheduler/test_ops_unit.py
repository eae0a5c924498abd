"""The scheduler's rules, one per test, without a broker: :class:`Operations` on a store in
memory and a fake fleet.

``FakeFleet`` stands in for the :class:`~fogmesh.scheduler.nodes.NodeTracker` because the rule
is under test, not the tracker (which folds bus messages and has its own tests through the
service); it answers the three questions the operations ask: which nodes exist, which are
offline, and what each reports running.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from fogmesh.bus import Refusal
from fogmesh.protocol import AppEventData, AppManifest, ErrorCode, EventKind, NodeFacts
from fogmesh.protocol.events import PlacementFailedData, ReplacedData
from fogmesh.scheduler.config import Quota, SchedulerConfig
from fogmesh.scheduler.ops import Changes, Operations
from fogmesh.scheduler.placement import Liveness, NodeInfo, PlacedWorkload
from fogmesh.scheduler.store import AppRecord, Store


class FakeFleet:
    """Nodes by id (facts only), the offline ones, and what runs where."""

    def __init__(self) -> None:
        self.facts: dict[str, NodeFacts] = {}
        self.down: set[str] = set()
        self.running: set[tuple[str, str, str]] = set()  # (node, workload, spec_hash)

    def add(self, node: str, *, cpu: int = 1, memory: int = 2**30) -> None:
        self.facts[node] = NodeFacts(
            device_id=node, arch="x86_64", cpu_count=cpu, memory_bytes=memory,
            disk_bytes=2**34, runtimes=["docker"],
        )  # fmt: skip

    def offline(self) -> set[str]:
        return set(self.down)

    def is_running(self, node_id: str, workload: str, spec_hash: str) -> bool:
        return (node_id, workload, spec_hash) in self.running

    def unreachable_for(self, node_id: str) -> float | None:
        return None

    def infos(self, placed: dict[str, list[PlacedWorkload]]) -> Iterable[NodeInfo]:
        for node, facts in self.facts.items():
            liveness = Liveness.OFFLINE if node in self.down else Liveness.ONLINE
            yield NodeInfo(node, facts, liveness, None, placed.get(node, []))


def manifest(
    version: str = "1", *, replicas: int = 1, cpu: float = 0.5, **comp: Any
) -> AppManifest:
    component = {"name": "web", "image": "nginx", "replicas": replicas,
                 "requests": {"cpu": cpu, "memory": "64Mi"}, **comp}  # fmt: skip
    return AppManifest.model_validate(
        {"name": "shop", "version": version, "components": [component]}
    )


@pytest.fixture
def fleet() -> FakeFleet:
    return FakeFleet()


@pytest.fixture
def ops(fleet: FakeFleet, tmp_path: Path) -> Operations:
    return Operations(Store(tmp_path), fleet, SchedulerConfig(state_dir=tmp_path))


def nodes_of(rec: AppRecord, *, retiring: bool = False) -> list[str | None]:
    return sorted((p.node for p in rec.placements if p.retiring is retiring), key=str)


def test_deploy_places_every_replica_and_tells_the_registry(
    ops: Operations, fleet: FakeFleet
) -> None:
    fleet.add("n1")
    fleet.add("n2")
    changes = Changes()
    rec = ops.deploy("acme", manifest(replicas=2), changes)
    assert nodes_of(rec) == ["n1", "n2"]  # 0.5 + 0.5 CPU fits either node; spread wins
    assert changes.dirty == {"n1", "n2"}
    [(tenant, event)] = changes.events
    data = event.payload_as(AppEventData)
    assert (tenant, event.kind, data.version) == ("acme", EventKind.APP_DEPLOYED, "1")
    assert data.manifest is not None
    assert data.manifest["name"] == "shop"


def test_deploy_that_does_not_fit_changes_nothing(ops: Operations, fleet: FakeFleet) -> None:
    fleet.add("n1", cpu=1)
    changes = Changes()
    with pytest.raises(Refusal) as info:
        ops.deploy("acme", manifest(cpu=2), changes)
    assert info.value.code is ErrorCode.UNSCHEDULABLE
    assert ops.store.doc.apps == {}
    assert changes == Changes()


def test_deploy_twice_is_a_conflict(ops: Operations, fleet: FakeFleet) -> None:
    fleet.add("n1")
    ops.deploy("acme", manifest(), Changes())
    with pytest.raises(Refusal) as info:
        ops.deploy("acme", manifest(), Changes())
    assert info.value.code is ErrorCode.CONFLICT


def test_quota_refuses_before_placing(fleet: FakeFleet, tmp_path: Path) -> None:
    fleet.add("n1", cpu=8)
    config = SchedulerConfig(state_dir=tmp_path, quotas={"acme": Quota(max_workloads=2)})
    ops = Operations(Store(tmp_path), fleet, config)
    with pytest.raises(Refusal) as info:
        ops.deploy("acme", manifest(replicas=3), Changes())
    assert info.value.code is ErrorCode.QUOTA_EXCEEDED
    assert info.value.info().details["resource"] == "workloads"


def test_update_starts_the_new_version_beside_the_old(ops: Operations, fleet: FakeFleet) -> None:
    fleet.add("n1")
    ops.deploy("acme", manifest("1"), Changes())
    fleet.add("n2")
    changes = Changes()
    rec = ops.update("acme", manifest("2"), changes)
    assert nodes_of(rec) == ["n2"]  # a node holds one workload of a name: n1 has the old one
    assert nodes_of(rec, retiring=True) == ["n1"]
    assert (rec.revision, rec.manifest.version) == (2, "2")
    assert changes.events[0][1].payload_as(AppEventData).beside is True


def test_update_that_fits_only_in_place_replaces_the_old(ops: Operations, fleet: FakeFleet) -> None:
    fleet.add("n1")
    ops.deploy("acme", manifest("1"), Changes())
    changes = Changes()
    rec = ops.update("acme", manifest("2"), changes)
    assert nodes_of(rec) == ["n1"]
    assert nodes_of(rec, retiring=True) == []  # stopped now, then the new one started
    assert changes.events[0][1].payload_as(AppEventData).beside is False


def test_update_that_does_not_fit_at_all_leaves_the_app_as_it_was(
    ops: Operations, fleet: FakeFleet
) -> None:
    fleet.add("n1", cpu=1)
    ops.deploy("acme", manifest("1", replicas=2, cpu=0.4), Changes())
    before = ops.get("acme", "shop").model_copy(deep=True)
    changes = Changes()
    with pytest.raises(Refusal) as info:  # web-0 and web-1 stay; web-2 does not fit
        ops.update("acme", manifest("1", replicas=3, cpu=0.4), changes)
    assert info.value.code is ErrorCode.UNSCHEDULABLE
    assert ops.get("acme", "shop") == before  # placements, revisions and manifest untouched
    assert changes == Changes()


def test_update_keeps_unchanged_workloads_where_they_are(ops: Operations, fleet: FakeFleet) -> None:
    fleet.add("n1", cpu=4)
    ops.deploy("acme", manifest("1", replicas=1), Changes())
    rec = ops.update("acme", manifest("1", replicas=2), Changes())  # same spec for web-0
    web0 = next(p for p in rec.placements if p.spec.replica == 0)
    assert (web0.node, web0.revision, web0.retiring) == ("n1", 2, False)
    assert nodes_of(rec, retiring=True) == []


def test_scale_down_removes_the_highest_replicas(ops: Operations, fleet: FakeFleet) -> None:
    fleet.add("n1", cpu=4)
    ops.deploy("acme", manifest(replicas=3), Changes())
    changes = Changes()
    rec = ops.scale("acme", "shop", "web", 1, changes)
    assert [p.spec.replica for p in rec.placements] == [0]
    assert changes.events[0][1].payload_as(AppEventData).replicas == 1


def test_delete_names_its_workloads_and_frees_the_nodes(ops: Operations, fleet: FakeFleet) -> None:
    fleet.add("n1")
    ops.deploy("acme", manifest(), Changes())
    changes = Changes()
    assert ops.delete("acme", "shop", changes) == ["shop-web-0"]
    assert changes.dirty == {"n1"}
    assert ops.store.doc.apps == {}
    assert changes.events[0][1].kind is EventKind.APP_DELETED


def test_heal_moves_workloads_off_an_offline_node(ops: Operations, fleet: FakeFleet) -> None:
    fleet.add("n1")
    ops.deploy("acme", manifest(), Changes())
    fleet.add("n2")
    fleet.down.add("n1")
    changes = Changes()
    ops.heal(changes, retry_pending=False)
    assert nodes_of(ops.get("acme", "shop")) == ["n2"]
    [(_, event)] = changes.events
    assert event.payload_as(ReplacedData) == ReplacedData(from_="n1", to="n2")


def test_a_workload_with_no_node_left_is_reported_once(ops: Operations, fleet: FakeFleet) -> None:
    fleet.add("n1")
    ops.deploy("acme", manifest(), Changes())
    fleet.down.add("n1")
    first, again = Changes(), Changes()
    ops.heal(first, retry_pending=False)
    ops.heal(again, retry_pending=True)
    assert nodes_of(ops.get("acme", "shop")) == [None]
    [(_, event)] = first.events
    assert event.payload_as(PlacementFailedData).from_ == "n1"
    assert again.events == []


def test_the_old_version_retires_once_the_new_runs(ops: Operations, fleet: FakeFleet) -> None:
    fleet.add("n1")
    ops.deploy("acme", manifest("1"), Changes())
    fleet.add("n2")
    rec = ops.update("acme", manifest("2"), Changes())
    ops.heal(Changes(), retry_pending=False)
    assert nodes_of(rec, retiring=True) == ["n1"]  # the new one is not running yet
    new = next(p for p in rec.placements if not p.retiring)
    fleet.running.add(("n2", new.name, new.spec.spec_hash()))
    ops.heal(Changes(), retry_pending=False)
    assert nodes_of(ops.get("acme", "shop"), retiring=True) == []
