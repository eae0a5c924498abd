"""Liveness of idle agents, whose heartbeats are minutes apart (``interval_s`` 300): a will is
what takes a dead node offline, also one replayed from a healed site's backlog."""

from __future__ import annotations

from fogmesh.registry.liveness import LivenessTracker


def _idle(t: LivenessTracker, node: str, now: float) -> None:
    t.alive(node, now, retained=False, via="hello", boot_id="b1")
    t.alive(node, now, retained=False, via="heartbeat", interval=300.0)


def test_a_will_held_while_cut_takes_the_node_offline_soon_after_the_heal() -> None:
    t = LivenessTracker(missed=3, default_interval=2.0)
    _idle(t, "n", 0.0)
    t.cut(["n"], 10.0)
    assert t.last_will("n", 20.0, boot_id="b1") == []  # maybe history: held
    t.mend(["n"], 30.0)
    # its hold (1.5 x the shorter of 300 s and --default-interval) ended during the cut and no
    # newer boot spoke: offline at the first tick after the heal, not K x 300 s later
    lost = t.tick(30.1)
    assert [(x.node, x.new, x.reason) for x in lost] == [("n", "offline", "last-will")]


def test_a_will_right_after_the_heal_is_held_briefly_then_taken() -> None:
    t = LivenessTracker(missed=3, default_interval=2.0)
    _idle(t, "n", 0.0)
    t.cut(["n"], 10.0)
    t.mend(["n"], 30.0)
    assert t.last_will("n", 31.0, boot_id="b1") == []
    assert [x.new for x in t.tick(34.1)] == ["offline"]


def test_a_newer_boot_after_a_replayed_will_keeps_the_node() -> None:
    t = LivenessTracker(missed=3, default_interval=2.0)
    _idle(t, "n", 0.0)
    t.cut(["n"], 10.0)
    t.last_will("n", 20.0, boot_id="b1")
    t.alive("n", 20.5, retained=False, via="hello", boot_id="b2")
    t.mend(["n"], 30.0)
    assert t.tick(40.0) == []
    assert t.state("n") == "online"


def test_an_idle_node_is_not_stale_between_its_heartbeats() -> None:
    t = LivenessTracker(missed=3, default_interval=2.0)
    _idle(t, "n", 0.0)
    assert t.tick(440.0) == []  # 1.5 x 300 s not yet passed
    assert [x.new for x in t.tick(451.0)] == ["stale"]
