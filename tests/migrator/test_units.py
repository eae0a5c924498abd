"""The migrator's rules and the agent's handover staging, without a broker."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from fogmesh.agent.handover import ChunkRefused, Handover
from fogmesh.migrator.fleet import FleetView
from fogmesh.migrator.guard import Guard
from fogmesh.protocol.node import Heartbeat, Usage


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_handover_resumes_at_the_offset_it_needs_and_refuses_a_corrupt_chunk(
    tmp_path: Path,
) -> None:
    source, peer = Handover(tmp_path / "src"), Handover(tmp_path / "peer")
    data = os.urandom(10_000)
    snap, size, total = source.stage_out("acme/w", data)
    assert (size, total) == (len(data), _sha(data))
    first = source.read_chunk(snap, 0, 4096)
    assert peer.put_chunk("acme/w", snap, 0, first, _sha(first)) == 4096
    # a repeated or out-of-order chunk is not written: the answer is the offset needed
    assert peer.put_chunk("acme/w", snap, 0, first, _sha(first)) == 4096
    assert peer.put_chunk("acme/w", snap, 8192, b"x", _sha(b"x")) == 4096
    second = source.read_chunk(snap, 4096, 4096)
    with pytest.raises(ChunkRefused):
        peer.put_chunk("acme/w", snap, 4096, b"\0" + second[1:], _sha(second))
    assert not peer.complete("acme/w", snap, size, total)
    offset = 4096
    while offset < size:
        chunk = source.read_chunk(snap, offset, 4096)
        offset = peer.put_chunk("acme/w", snap, offset, chunk, _sha(chunk))
    assert peer.complete("acme/w", snap, size, total)
    assert peer.take_ready("acme/w") == data
    peer.drop_ready("acme/w")
    assert peer.take_ready("acme/w") is None
    source.drop_out("acme/w")
    with pytest.raises(FileNotFoundError):
        source.read_chunk(snap, 0, 1)


def test_handover_discards_a_snapshot_whose_whole_checksum_fails(tmp_path: Path) -> None:
    peer = Handover(tmp_path)
    assert peer.put_chunk("acme/w", "s1", 0, b"abc", _sha(b"abc")) == 3
    with pytest.raises(ChunkRefused):
        peer.complete("acme/w", "s1", 3, _sha(b"abd"))
    assert peer.put_chunk("acme/w", "s1", 0, b"", None) == 0  # start again from 0


def test_guard_cool_down_budget_and_lost_nodes() -> None:
    guard = Guard(cooldown_s=60, budget=2, window_s=100, avoid_s=30)
    assert guard.why_not("t/a", "n1", now=0) is None
    guard.moved("t/a", "n1", now=0)
    assert "cool-down" in (guard.why_not("t/a", "n1", now=10) or "")
    assert guard.why_not("t/a", "n1", now=61) is None
    guard.moved("t/b", "n1", now=20)
    assert "budget" in (guard.why_not("t/c", "n1", now=50) or "")
    assert guard.why_not("t/c", "n1", now=101) is None  # the first move left the window
    guard.failed("n2", now=0)
    assert guard.avoid("n2", now=10) is not None
    assert guard.avoid("n2", now=31) is None


def _beat(fleet: FleetView, node: str, cpu: float, now: float) -> None:
    usage = Usage(
        cpu_percent=cpu, memory_used_bytes=1, memory_total_bytes=100,
        disk_used_bytes=0, disk_total_bytes=100,
    )  # fmt: skip
    fleet.on_heartbeat(Heartbeat(node=node, seq=0, interval_s=1.0, usage=usage), now=now)


def test_overload_needs_the_whole_window_and_clears_only_below_the_lower_threshold() -> None:
    fleet = FleetView()

    def hot(now: float) -> list[str]:
        return fleet.overloaded(high=90, memory_high=90, clear=75, window_s=10, now=now)

    _beat(fleet, "n1", 95, now=0)
    assert hot(0) == []
    _beat(fleet, "n1", 80, now=5)  # between the thresholds: still hot (hysteresis)
    assert hot(5) == []
    _beat(fleet, "n1", 95, now=10)
    assert hot(10) == ["n1"]
    _beat(fleet, "n1", 70, now=11)  # below the lower threshold: calm
    assert hot(11) == []
    _beat(fleet, "n1", 95, now=12)
    assert hot(15) == []


def test_silent_node_is_lost_after_the_missed_heartbeats() -> None:
    fleet = FleetView(offline_after=3)
    _beat(fleet, "n1", 1, now=100)
    assert fleet.judge(now=102) == []
    lost = fleet.judge(now=104)
    assert [(v.id, v.lost_how) for v in lost] == [("n1", "missed-heartbeats")]
    assert fleet.judge(now=105) == []  # reported once
