"""The rules of a site's own writes during a partition, without a broker: the site term, the
site migrator's choice of peer, the scheduler's adoption on healing and its settle.

The scheduler's ``Operations`` need a fleet; ``tests.scheduler.test_ops_unit.FakeFleet`` is
the fake the rule tests use (the rule is under test, not the tracker); the tracker's own
settle is tested on a real :class:`NodeTracker` with a clock of our own.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fogmesh.migrator.fleet import FleetView
from fogmesh.migrator.guard import Guard
from fogmesh.migrator.site import pick_peer
from fogmesh.protocol import AppManifest, EventKind, NodeFacts
from fogmesh.protocol.mesh import LinkState, LinkStatus
from fogmesh.protocol.node import NodeHello, NodeLiveness
from fogmesh.protocol.partition import SITE_TERM, is_site_term, site_generation
from fogmesh.protocol.workload import DesiredState, RuntimeKind, WorkloadSpec
from fogmesh.scheduler.config import SchedulerConfig
from fogmesh.scheduler.nodes import NodeTracker
from fogmesh.scheduler.ops import Changes, Operations
from fogmesh.scheduler.sites import adopt_site_write, pinned_on
from fogmesh.scheduler.store import Store
from tests.scheduler.test_ops_unit import FakeFleet


def manifest(name: str, **placement: str) -> AppManifest:
    component = {"name": "web", "image": "nginx", "requests": {"cpu": 0.5, "memory": "64Mi"},
                 "placement": placement}  # fmt: skip
    return AppManifest.model_validate({"name": name, "components": [component]})


def test_a_site_term_is_above_every_cloud_write_it_did_not_see() -> None:
    assert site_generation(0) == SITE_TERM
    assert site_generation(41) == SITE_TERM
    assert site_generation(SITE_TERM + 7) == 2 * SITE_TERM
    seen = 41
    site = site_generation(seen)
    assert all(cloud < site for cloud in range(seen + 1, seen + 1000))  # unseen cloud writes
    assert is_site_term(site, seen)
    assert is_site_term(site_generation(site + 1), site + 1)  # its next, past a cloud rewrite
    assert not is_site_term(site, site + 1)  # the cloud's write after adopting it


def _facts(node: str, site: str, cpu: int = 2) -> NodeFacts:
    return NodeFacts(
        device_id=node, arch="x86_64", cpu_count=cpu, memory_bytes=2**30, disk_bytes=2**34,
        runtimes=["native"], site=site,
    )  # fmt: skip


def _spec(name: str, cpu: float = 0.5) -> WorkloadSpec:
    return WorkloadSpec(
        name=name, tenant="t", app="a", component="c", runtime=RuntimeKind.NATIVE,
        executable="/bin/true", cpu_limit=cpu,
    )  # fmt: skip


def test_the_site_picks_a_live_peer_of_its_own_site_with_room() -> None:
    fleet = FleetView(home="site-a")
    for node, site, cpu in (("a1", "site-a", 2), ("a2", "site-a", 1), ("a3", "site-a", 2),
                            ("b1", "site-b", 8)):  # fmt: skip
        fleet.on_hello(NodeHello(node=node, facts=_facts(node, site, cpu)))
        fleet.on_state(node, NodeLiveness.ONLINE)
    fleet.on_link(LinkStatus(broker="site-a", link="wan", state=LinkState.DOWN, queue_depth=0,
                             dropped=0))  # fmt: skip
    assert fleet.live() == ["a1", "a2", "a3", "b1"]  # its own site is never unreachable to it
    fleet.on_desired(DesiredState(node="a3", generation=1, workloads=[_spec("x", 1.8)]))
    fleet.on_state("a1", NodeLiveness.OFFLINE)
    guard = Guard(cooldown_s=0, budget=9, window_s=1, avoid_s=60)
    # a2 has one core, a3 is nearly full, b1 is another site's
    assert pick_peer(fleet, "site-a", "a1", _spec("w", 0.9), guard) == "a2"
    with pytest.raises(LookupError) as refused:
        pick_peer(fleet, "site-a", "a1", _spec("w", 1.5), guard)
    assert "a2: cpu" in str(refused.value)
    assert "a3: cpu" in str(refused.value)
    assert "b1" not in str(refused.value)


def _ops(tmp_path: Path) -> tuple[Operations, FakeFleet]:
    fleet = FakeFleet()
    for node in ("a1", "a2", "cloud"):
        fleet.add(node, cpu=4)
    ops = Operations(Store(tmp_path), fleet, SchedulerConfig(state_dir=tmp_path))
    return ops, fleet


def test_the_scheduler_adopts_a_cut_off_sites_move(tmp_path: Path) -> None:
    ops, _ = _ops(tmp_path)
    changes = Changes()
    rec = ops.deploy("t", manifest("pin", node="a1"), changes)
    ops.deploy("t", manifest("shop"), changes)
    store = ops.store
    web = next(p for a, p in store.placements() if a.manifest.name != rec.manifest.name)
    web.node = "a1"  # both on a1
    store.doc.generations.update({"a1": 5, "a2": 3})
    assert pinned_on(store, "a1") == [rec.placements[0].name]
    # the site moved web (and, against its pin, pin) to a2 while cut off
    site = DesiredState(
        node="a2", generation=site_generation(3), site_writer="site-a",
        workloads=[web.spec, rec.placements[0].spec],
    )  # fmt: skip
    adopted = Changes()
    assert adopt_site_write(store, site, adopted) == 1
    assert web.node == "a2"
    assert rec.placements[0].node == "a1"  # pinned: stays, the rewrite drops the site's copy
    assert adopted.dirty == {"a1", "a2"}
    assert (store.doc.moves[-1].from_node, store.doc.moves[-1].to_node) == ("a1", "a2")
    assert [e.kind for _, e in adopted.events] == [EventKind.REPLACED]
    # the same write again (a retained echo), or one in the cloud's term: nothing
    store.doc.generations["a2"] = site.generation + 1
    assert adopt_site_write(store, site, Changes()) == 0
    cloud = site.model_copy(update={"site_writer": None, "generation": 10 * SITE_TERM})
    assert adopt_site_write(store, cloud, Changes()) == 0


def test_a_workload_deleted_while_cut_is_not_brought_back(tmp_path: Path) -> None:
    ops, _ = _ops(tmp_path)
    ops.deploy("t", manifest("shop"), Changes())
    store = ops.store
    spec = next(p for _, p in store.placements()).spec
    ops.delete("t", "shop", Changes())
    site = DesiredState(node="a2", generation=SITE_TERM, site_writer="site-a", workloads=[spec])
    adopted = Changes()
    assert adopt_site_write(store, site, adopted) == 0
    assert adopted.dirty == {"a2"}  # rewritten from the store: without it
    assert store.specs_for("a2") == []


def test_a_healed_sites_offline_node_keeps_its_workloads_while_it_settles() -> None:
    now = [100.0]
    tracker = NodeTracker(clock=lambda: now[0], heal_settle_s=10)
    tracker.on_hello(NodeHello(node="a1", facts=_facts("a1", "site-a")))
    down = LinkStatus(broker="site-a", link="wan", state=LinkState.DOWN, queue_depth=0, dropped=0)
    tracker.on_link(down)
    tracker.on_state("a1", NodeLiveness.OFFLINE)  # its will, queued through the cut
    tracker.on_link(down.model_copy(update={"state": LinkState.UP}))
    assert tracker.offline() == set()
    now[0] += 10.5
    assert tracker.offline() == {"a1"}
