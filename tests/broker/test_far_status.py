"""Which link statuses cross to the far broker (``fogmesh.broker.link._far_needs``).

An idle site's heartbeats cross now and then; a status across the WAN after each (its
``forwarded`` counter moved) was most of that site's WAN bytes, and with a steady stream the
one message in flight at a tick sent one too. The far copy follows every state change, every
tick of a drain (and its end), a message that has waited (at once, then at most every
``FAR_WAITING_EVERY`` seconds, and the end), and otherwise takes the counters at most every
``FAR_COUNTERS_EVERY`` seconds. Whether a message has waited, :class:`QueueWait` judges from
a real disk queue at the status ticks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fogmesh.broker.diskqueue import DiskQueue
from fogmesh.broker.link import FAR_COUNTERS_EVERY, _far_needs
from fogmesh.broker.link_status import FAR_WAITING_EVERY, STATUS_EVERY, WAITING_AFTER, QueueWait
from fogmesh.protocol import LinkState, LinkStatus


def _snap(*, waiting: bool = False, **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"broker": "site-a", "link": "wan", "state": LinkState.UP}
    base |= {"queue_depth": 0, "dropped": 0}
    snap = LinkStatus.model_validate({**base, **fields}).model_dump(exclude={"id", "ts"})
    return {**snap, "waiting": waiting}


def test_counters_alone_wait_for_the_far_interval() -> None:
    far = _snap(forwarded=10)
    assert not _far_needs(_snap(forwarded=11), far, 5.0)
    assert _far_needs(_snap(forwarded=11), far, FAR_COUNTERS_EVERY)


def test_the_counters_wait_a_little_for_a_tick_with_nothing_in_flight() -> None:
    in_flight = _snap(forwarded=11, queue_depth=1, queued_to_remote=1)
    assert not _far_needs(in_flight, _snap(forwarded=10), FAR_COUNTERS_EVERY)
    assert _far_needs(in_flight, _snap(forwarded=10), FAR_COUNTERS_EVERY + FAR_WAITING_EVERY)


def test_a_state_change_crosses_at_once() -> None:
    far = _snap()
    assert _far_needs(_snap(state=LinkState.DOWN, since=1.0), far, 1.0)
    assert _far_needs(_snap(path="radio"), far, 1.0)
    assert _far_needs(_snap(last_error="refused"), far, 1.0)
    assert _far_needs(_snap(), None, 0.0)


def test_a_drain_crosses_every_tick_until_it_ends() -> None:
    assert _far_needs(_snap(backlog=50), _snap(), 1.0)
    assert _far_needs(_snap(backlog=40), _snap(backlog=50), 1.0)
    assert _far_needs(_snap(), _snap(backlog=50), 1.0), "the end of a drain must cross"


def test_messages_in_flight_are_not_news() -> None:
    assert not _far_needs(_snap(queue_depth=1, queued_to_remote=1), _snap(), 5.0)
    assert not _far_needs(_snap(queue_depth=3, queued_to_remote=3), _snap(queue_depth=1), 5.0)


def test_a_wait_crosses_at_once_then_at_its_interval_and_its_end() -> None:
    waiting = _snap(waiting=True, queue_depth=9, queued_to_remote=9)
    assert _far_needs(waiting, _snap(), 1.0), "the start of a wait must cross"
    assert not _far_needs(waiting, waiting, FAR_WAITING_EVERY - 1)
    assert _far_needs(waiting, waiting, FAR_WAITING_EVERY)
    assert _far_needs(_snap(queue_depth=2, queued_to_remote=2), waiting, 1.0), "its end"
    # a far copy that caught a message in flight is put right once the queue is empty
    assert _far_needs(_snap(), _snap(queue_depth=1, queued_to_remote=1), 1.0)


def test_a_steady_streams_flicker_costs_the_far_interval_alone() -> None:
    """An hour of ticks with one message in flight at every third: the far copy is sent as
    often as for an idle link (the counters' interval)."""
    far: dict[str, Any] | None = None
    far_at, sent = 0.0, 0
    for tick in range(int(3600 / STATUS_EVERY)):
        now = tick * STATUS_EVERY
        depth = int(tick % 3 == 0)
        snap = _snap(forwarded=tick, queue_depth=depth, queued_to_remote=depth)
        if _far_needs(snap, far, now - far_at):
            far, far_at, sent = snap, now, sent + 1
    assert sent <= 1 + 3600 / FAR_COUNTERS_EVERY  # the first, then one per interval


def _put(queue: DiskQueue, n: int) -> None:
    queue.put_many([("tele/x", b"p", 1, False)] * n)


def test_a_queue_whose_messages_cross_between_ticks_does_not_wait(tmp_path: Path) -> None:
    queue = DiskQueue(tmp_path / "q.sqlite", max_messages=1000)
    wait = QueueWait()
    for tick in range(10):
        queue.remove_through(queue.last_seq())  # what the last tick saw crossed
        _put(queue, 1 + tick % 2)  # and the stream's next ones are in flight
        assert not wait.waits(queue, tick * STATUS_EVERY)
    queue.close()


def test_a_message_seen_a_tick_ago_still_queued_waits(tmp_path: Path) -> None:
    queue = DiskQueue(tmp_path / "q.sqlite", max_messages=1000)
    wait = QueueWait()
    _put(queue, 5)
    assert not wait.waits(queue, 0.0)
    assert not wait.waits(queue, WAITING_AFTER / 2), "not yet long enough"
    assert wait.waits(queue, WAITING_AFTER)
    # a long queue moving out: what was there a tick ago is still there
    for tick in range(2, 10):
        queue.remove_through(queue.peek(1)[0].seq)
        _put(queue, 1)
        assert wait.waits(queue, tick * WAITING_AFTER)
    queue.remove_through(queue.last_seq())
    assert not wait.waits(queue, 10 * WAITING_AFTER), "an empty queue waits for nothing"
    _put(queue, 1)
    assert not wait.waits(queue, 11 * WAITING_AFTER), "a new wait starts from its first tick"
    queue.close()


def test_its_memory_stays_small_through_a_long_partition(tmp_path: Path) -> None:
    queue = DiskQueue(tmp_path / "q.sqlite", max_messages=100_000)
    wait = QueueWait()
    for tick in range(2000):
        _put(queue, 1)
        wait.waits(queue, tick * STATUS_EVERY)
    assert wait.waits(queue, 2000 * STATUS_EVERY)
    assert len(wait._marks) <= 3
    queue.close()
