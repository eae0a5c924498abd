"""The scheduler's ``apps/move`` rule (the only way the migrator changes placements), without a
broker: :class:`Operations` on a store in memory and the scheduler tests' fake fleet."""

from __future__ import annotations

from pathlib import Path

import pytest

from fogmesh.bus import Refusal
from fogmesh.protocol import ErrorCode, EventKind
from fogmesh.protocol.events import ReplacedData
from fogmesh.protocol.migration import MigrationTrigger, MoveWorkload
from fogmesh.scheduler.config import SchedulerConfig
from fogmesh.scheduler.ops import Changes, Operations
from fogmesh.scheduler.store import Store
from tests.scheduler.test_ops_unit import FakeFleet, manifest

WORKLOAD = "shop-web-0"


@pytest.fixture
def fleet() -> FakeFleet:
    fake = FakeFleet()
    for node in ("n1", "n2", "n3"):
        fake.add(node, cpu=2)
    return fake


@pytest.fixture
def ops(fleet: FakeFleet, tmp_path: Path) -> Operations:
    ops = Operations(Store(tmp_path), fleet, SchedulerConfig(state_dir=tmp_path))
    ops.deploy("acme", manifest(), Changes())
    return ops


def _node(ops: Operations) -> str | None:
    return ops.get("acme", "shop").placements[0].node


def test_a_dry_run_names_a_node_other_than_the_source_and_changes_nothing(
    ops: Operations,
) -> None:
    source = _node(ops)
    changes = Changes()
    got = ops.move("acme", MoveWorkload(workload=WORKLOAD, dry_run=True), changes)
    assert got[0] == source
    assert got[1] != source
    assert _node(ops) == source
    assert (changes.dirty, changes.events, ops.store.doc.moves) == (set(), [], [])


def test_a_move_rewrites_both_nodes_records_it_and_says_so(ops: Operations) -> None:
    source = _node(ops)
    target = next(n for n in ("n1", "n2", "n3") if n != source)
    changes = Changes()
    request = MoveWorkload(
        workload=WORKLOAD, to=target, snapshot="s1", trigger=MigrationTrigger.DRAIN
    )
    assert ops.move("acme", request, changes) == (source, target)
    assert _node(ops) == target
    assert changes.dirty == {source, target}
    [move] = ops.store.doc.moves
    assert (move.workload, move.from_node, move.to_node, move.trigger, move.snapshot) == (
        WORKLOAD, source, target, "drain", "s1",
    )  # fmt: skip
    [(tenant, event)] = changes.events
    assert (tenant, event.kind) == ("acme", EventKind.REPLACED)
    assert event.payload_as(ReplacedData).to == target


def test_candidates_limit_the_choice_and_offline_nodes_are_never_chosen(
    ops: Operations, fleet: FakeFleet
) -> None:
    source = _node(ops)
    others = [n for n in ("n1", "n2", "n3") if n != source]
    fleet.down.add(others[0])
    request = MoveWorkload(workload=WORKLOAD, candidates=others, dry_run=True)
    assert ops.move("acme", request, Changes())[1] == others[1]
    fleet.down.add(others[1])
    with pytest.raises(Refusal) as refused:
        ops.move("acme", request, Changes())
    assert refused.value.code is ErrorCode.UNSCHEDULABLE
    reasons = refused.value.details["reasons"]
    assert isinstance(reasons, dict)
    assert set(reasons) == {"n1", "n2", "n3"}


def test_another_tenant_s_workload_is_not_found(ops: Operations) -> None:
    with pytest.raises(Refusal) as refused:
        ops.move("other", MoveWorkload(workload=WORKLOAD), Changes())
    assert refused.value.code is ErrorCode.NOT_FOUND
