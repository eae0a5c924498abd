"""The outbox's bound, its policies and retained coalescing (no broker needed)."""

from __future__ import annotations

import pytest

from fogmesh.bus import OutboxPolicy, backoff_delay
from fogmesh.bus._outbox import OutboundMessage, Outbox
from fogmesh.protocol import NotConnectedError


def _msg(n: int, *, retain: bool = False, topic: str = "fm/v1/x") -> OutboundMessage:
    return OutboundMessage(topic, str(n).encode(), 1, retain)


def _drain(box: Outbox) -> list[bytes]:
    out = []
    while (m := box.pop()) is not None:
        out.append(m.payload)
    return out


def test_drop_oldest_keeps_the_newest_and_counts() -> None:
    box = Outbox(3, OutboxPolicy.DROP_OLDEST)
    for n in range(5):
        box.put(_msg(n))
    assert _drain(box) == [b"2", b"3", b"4"]
    assert box.dropped == 2


def test_drop_oldest_spares_retained_state() -> None:
    box = Outbox(2, OutboxPolicy.DROP_OLDEST)
    box.put(_msg(0, retain=True, topic="fm/v1/state"))
    box.put(_msg(1))
    box.put(_msg(2))
    assert _drain(box) == [b"0", b"2"]


def test_reject_raises_and_keeps_what_it_has() -> None:
    box = Outbox(2, OutboxPolicy.REJECT)
    box.put(_msg(0))
    box.put(_msg(1))
    with pytest.raises(NotConnectedError):
        box.put(_msg(2))
    assert _drain(box) == [b"0", b"1"]


def test_retained_is_latest_per_topic() -> None:
    box = Outbox(10, OutboxPolicy.DROP_OLDEST)
    box.put(_msg(0, retain=True, topic="fm/v1/a"))
    box.put(_msg(1))
    box.put(_msg(2, retain=True, topic="fm/v1/a"))
    assert _drain(box) == [b"1", b"2"]


def test_push_front_goes_first() -> None:
    box = Outbox(10, OutboxPolicy.DROP_OLDEST)
    box.put(_msg(1))
    box.push_front(_msg(0))
    assert _drain(box) == [b"0", b"1"]


def test_backoff_is_capped_and_jittered() -> None:
    delays = [backoff_delay(a, base=0.5, cap=8.0) for a in range(40) for _ in range(5)]
    assert all(0 <= d <= 8.0 for d in delays)
    assert len(set(delays)) > 1


def test_requeue_never_displaces_newer_retained_state() -> None:
    box = Outbox(10, OutboxPolicy.DROP_OLDEST)
    box.put(_msg(2, retain=True, topic="fm/v1/a"))  # queued while the older send was failing
    box.requeue(_msg(1, retain=True, topic="fm/v1/a"))  # the failed, older value comes back
    box.requeue(_msg(0))  # a failed plain message goes first
    assert _drain(box) == [b"0", b"2"]
