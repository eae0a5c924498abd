"""Which link statuses cross to the far broker (``fogmesh.broker.link._far_needs``).

An idle site's heartbeats cross now and then; a status across the WAN after each (its
``forwarded`` counter moved) was most of that site's WAN bytes. The far copy follows every
state change, every moment something waits or drains (and the moment that ends), and otherwise
takes the counters at most every ``FAR_COUNTERS_EVERY`` seconds.
"""

from __future__ import annotations

from typing import Any

from fogmesh.broker.link import FAR_COUNTERS_EVERY, _far_needs
from fogmesh.protocol import LinkState, LinkStatus


def _snap(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"broker": "site-a", "link": "wan", "state": LinkState.UP}
    base |= {"queue_depth": 0, "dropped": 0}
    return LinkStatus.model_validate({**base, **fields}).model_dump(exclude={"id", "ts"})


def test_counters_alone_wait_for_the_far_interval() -> None:
    far = _snap(forwarded=10)
    assert not _far_needs(_snap(forwarded=11), far, 5.0)
    assert _far_needs(_snap(forwarded=11), far, FAR_COUNTERS_EVERY)


def test_a_state_change_crosses_at_once() -> None:
    far = _snap()
    assert _far_needs(_snap(state=LinkState.DOWN, since=1.0), far, 1.0)
    assert _far_needs(_snap(path="radio"), far, 1.0)
    assert _far_needs(_snap(last_error="refused"), far, 1.0)
    assert _far_needs(_snap(), None, 0.0)


def test_waiting_and_draining_cross_until_they_end() -> None:
    assert _far_needs(_snap(queue_depth=3, queued_to_remote=3), _snap(), 1.0)
    assert _far_needs(_snap(backlog=50), _snap(), 1.0)
    assert _far_needs(_snap(), _snap(backlog=50), 1.0), "the end of a drain must cross"
