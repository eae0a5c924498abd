"""Wills replayed by a healed cut must not take a running node offline (chaos seed 14).

In that run ``edge-2``'s agent was SIGKILLed twice inside the cut site; each death left a will
(``state: offline``, retained) at ``site-b``'s broker, each restart a hello with a new
``boot_id``. After the heal the backlog crossed in order, will, hello, will, hello, and the
registry took every will at once: ``edge-2`` went offline (``last-will``) four times in 11 s
while it ran, and the scheduler moved its convolver to the other site. The judge
(``fogmesh.registry.liveness``) now holds a will that arrives while the node's site is cut or
soon after it came back, and drops it if a newer boot of the agent speaks meanwhile.
"""

from __future__ import annotations

from fogmesh.protocol import EventKind
from fogmesh.registry.liveness import LivenessTracker, Transition


def _kinds(transitions: list[Transition]) -> list[EventKind | None]:
    return [t.kind for t in transitions]


def _cut_and_healed(t: LivenessTracker) -> None:
    """``n`` (boot b1, heartbeat every 2 s) behind a cut from 1 s to 30 s."""
    t.alive("n", 0.0, retained=False, via="hello", boot_id="b1", interval=2.0)
    t.cut(["n"], 1.0)
    assert t.tick(29.0) == []
    t.mend(["n"], 30.0)


def test_wills_replayed_after_a_heal_each_followed_by_a_newer_boot_keep_the_node_online() -> None:
    t = LivenessTracker(missed=3)
    _cut_and_healed(t)
    seen: list[Transition] = []
    # the backlog: b1's will, b2's hello, b2's will, b3's hello (as seed 14 had it)
    seen += t.last_will("n", 30.10, boot_id="b1")
    seen += t.alive("n", 30.11, retained=False, via="hello", boot_id="b2")
    seen += t.last_will("n", 30.12, boot_id="b2")
    seen += t.alive("n", 30.13, retained=False, via="hello", boot_id="b3")
    seen += t.alive("n", 30.14, retained=False, via="state", boot_id="b3")
    for now in (31.0, 33.0, 34.0):
        seen += t.alive("n", now, retained=False, via="heartbeat")
        seen += t.tick(now + 0.5)
    assert EventKind.NODE_LOST not in _kinds(seen), seen
    assert t.state("n") == "online"


def test_a_will_arriving_while_the_site_is_cut_waits_for_the_next_boot() -> None:
    t = LivenessTracker(missed=3)
    t.alive("n", 0.0, retained=False, via="hello", boot_id="b1", interval=2.0)
    t.cut(["n"], 1.0)
    assert t.last_will("n", 20.0, boot_id="b1") == []
    assert t.alive("n", 20.1, retained=False, via="hello", boot_id="b2") == []
    assert t.tick(60.0) == []
    assert t.state("n") == "unreachable"


def test_a_replayed_will_with_no_newer_boot_after_it_takes_the_node_offline() -> None:
    t = LivenessTracker(missed=3)
    _cut_and_healed(t)
    assert t.last_will("n", 30.1, boot_id="b1") == []
    # a heartbeat b1 sent before it died is no newer boot
    t.alive("n", 30.2, retained=False, via="heartbeat")
    assert t.tick(33.0) == []
    lost = t.tick(33.2)  # 1.5 intervals after the will
    assert _kinds(lost) == [EventKind.NODE_LOST]
    assert lost[0].reason == "last-will"
    assert t.state("n") == "offline"


def test_a_will_long_after_the_heal_is_offline_at_once() -> None:
    t = LivenessTracker(missed=3)
    _cut_and_healed(t)
    for now in range(32, 100, 2):
        t.alive("n", float(now), retained=False, via="heartbeat")
        assert t.tick(now + 0.5) == []
    assert _kinds(t.last_will("n", 100.0, boot_id="b1")) == [EventKind.NODE_LOST]
