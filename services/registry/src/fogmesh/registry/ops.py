"""Write operations: what the ingest side asks the single database writer to do.

They are plain data, made on the event loop and applied in a worker thread, in order, one
batch per transaction (heartbeats are coalesced latest-per-node and applied last).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ActualOp",
    "AppOp",
    "Batch",
    "EventOp",
    "HeartbeatOp",
    "HelloOp",
    "LivenessOp",
    "Op",
]


@dataclass(frozen=True, slots=True)
class HelloOp:
    """A node's facts from its hello (creates the node row if new)."""

    node: str
    facts: dict[str, Any]
    boot_id: str
    state: str
    at: float


@dataclass(frozen=True, slots=True)
class LivenessOp:
    """A node's liveness changed (creates the node row if new)."""

    node: str
    state: str
    at: float
    reason: str = ""
    boot_id: str | None = None


@dataclass(frozen=True, slots=True)
class HeartbeatOp:
    """The latest heartbeat of a node: usage, sequence, interval, when it was received."""

    node: str
    seq: int
    ts: float
    interval_s: float
    usage: dict[str, Any]
    at: float


@dataclass(frozen=True, slots=True)
class ActualOp:
    """A node's ``actual``: the complete set of workloads it runs now."""

    node: str
    workloads: list[dict[str, Any]]
    at: float


@dataclass(frozen=True, slots=True)
class AppOp:
    """An app announced (or deleted, when ``deleted``) by the scheduler."""

    tenant: str
    name: str
    version: str
    manifest: dict[str, Any]
    at: float
    deleted: bool = False


@dataclass(frozen=True, slots=True)
class EventOp:
    """An event to record (duplicates by ``id`` are ignored)."""

    row: dict[str, Any]


Op = HelloOp | LivenessOp | ActualOp | AppOp | EventOp


@dataclass(slots=True)
class Batch:
    """One transaction's worth of writes."""

    ops: list[Op] = field(default_factory=list)
    heartbeats: dict[str, HeartbeatOp] = field(default_factory=dict)
    after_commit: list[Callable[[], None]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ops) + len(self.heartbeats) + len(self.after_commit)
