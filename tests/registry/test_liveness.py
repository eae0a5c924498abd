"""The liveness judge on its own: stale, offline, last will, back, restart grace."""

from __future__ import annotations

import pytest

from fogmesh.protocol import EventKind
from fogmesh.registry.liveness import LivenessTracker, Transition


def kinds(transitions: list[Transition]) -> list[EventKind | None]:
    return [t.kind for t in transitions]


def test_new_node_joins_then_goes_stale_then_offline() -> None:
    t = LivenessTracker(missed=3, default_interval=10)
    assert kinds(t.alive("n", 0.0, retained=False, via="heartbeat", interval=1.0)) == [
        EventKind.NODE_JOINED
    ]
    assert t.tick(1.4) == []
    assert kinds(t.tick(1.6)) == [EventKind.NODE_STALE]
    assert t.tick(2.9) == []
    lost = t.tick(3.1)
    assert kinds(lost) == [EventKind.NODE_LOST]
    assert lost[0].reason == "missed-heartbeats"
    assert t.state("n") == "offline"
    assert t.tick(100) == []


def test_heartbeats_keep_a_node_online_and_revive_a_stale_one() -> None:
    t = LivenessTracker(missed=3)
    t.alive("n", 0.0, retained=False, via="heartbeat", interval=1.0)
    for i in range(1, 10):
        t.alive("n", float(i), retained=False, via="heartbeat")
        assert t.tick(i + 0.5) == []
    assert kinds(t.tick(11)) == [EventKind.NODE_STALE]
    back = t.alive("n", 11.1, retained=False, via="heartbeat")
    assert kinds(back) == [EventKind.NODE_BACK]
    assert back[0].data["from"] == "stale"


def test_last_will_is_offline_at_once_and_a_late_heartbeat_does_not_revive() -> None:
    t = LivenessTracker(missed=3)
    t.alive("n", 0.0, retained=False, via="hello", boot_id="b1")
    lost = t.last_will("n", 0.1, boot_id="b1")
    assert kinds(lost) == [EventKind.NODE_LOST]
    assert lost[0].reason == "last-will"
    assert t.alive("n", 0.2, retained=False, via="heartbeat") == []
    back = t.alive("n", 0.3, retained=False, via="state", boot_id="b2")
    assert kinds(back) == [EventKind.NODE_BACK]
    assert back[0].data["rebooted"] is True


def test_the_will_of_an_earlier_boot_is_ignored() -> None:
    t = LivenessTracker(missed=3)
    t.alive("n", 0.0, retained=False, via="hello", boot_id="new")
    assert t.last_will("n", 0.1, boot_id="old") == []
    assert t.state("n") == "online"


def test_retained_messages_are_not_signs_of_life() -> None:
    t = LivenessTracker(missed=3, default_interval=1.0)
    t.load("n", "offline", 1.0, boot_id="b", reason="missed-heartbeats", now=0.0)
    assert t.alive("n", 1.0, retained=True, via="state", boot_id="b") == []
    assert t.state("n") == "offline"


def test_restart_grace_then_judged() -> None:
    t = LivenessTracker(missed=3)
    t.load("alive", "online", 1.0, boot_id="", reason="", now=100.0)
    t.load("dead", "online", 1.0, boot_id="", reason="", now=100.0)
    for i in range(1, 12):  # up to 102.75: within the grace of 3 intervals, nobody is judged
        now = 100.0 + i * 0.25
        t.alive("alive", now, retained=False, via="heartbeat")
        assert t.tick(now) == []
    lost = t.tick(103.1)
    assert [(tr.node, tr.kind) for tr in lost] == [("dead", EventKind.NODE_LOST)]
    assert t.state("alive") == "online"


def test_missed_below_two_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        LivenessTracker(missed=1.5)


def test_a_shorter_interval_brings_the_judgement_forward() -> None:
    t = LivenessTracker(missed=3, default_interval=10)
    t.alive("n", 0.0, retained=False, via="hello")  # judged by the default 10 s for now
    t.alive("n", 0.5, retained=False, via="heartbeat", interval=1.0)
    assert kinds(t.tick(1.9)) == []
    assert kinds(t.tick(2.1)) == [EventKind.NODE_STALE]


def test_a_revived_node_is_judged_again() -> None:
    t = LivenessTracker(missed=3)
    t.alive("n", 0.0, retained=False, via="heartbeat", interval=1.0)
    assert kinds(t.tick(3.5)) == [EventKind.NODE_LOST]
    assert kinds(t.alive("n", 4.0, retained=False, via="heartbeat")) == [EventKind.NODE_BACK]
    assert kinds(t.tick(5.6)) == [EventKind.NODE_STALE]


def test_heartbeats_do_not_grow_the_deadlines() -> None:
    t = LivenessTracker(missed=3)
    for n in range(100):
        t.alive(f"n{n}", 0.0, retained=False, via="heartbeat", interval=1.0)
    for step in range(1, 200):
        now = step * 0.1
        for n in range(100):
            t.alive(f"n{n}", now, retained=False, via="heartbeat")
        assert t.tick(now) == []
    assert len(t._due) == 100  # one entry per live node, however often each one beats
