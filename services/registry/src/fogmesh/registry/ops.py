"""Write operations: what the ingest side asks the single database writer to do.

They are plain data, made on the event loop and applied in a worker thread, one batch per
transaction. A batch keeps them by kind and coalesced per node, so a join storm of 10,000
hellos is a few statements of many rows each, not 40,000 statements:

* hellos, actuals and heartbeats: the latest per node wins (each replaces what it reports);
* liveness changes: merged per node into the last one (its state, time and reason), keeping
  the last boot id any of them named and when the node was last seen online;
* apps: in order (a deploy then a delete must stay that way); events: all of them, but a
  node's ``node-joined`` only if the batch creates the node's row (its claim, which two
  replicas that both took a new node race for: the database picks one). A batch that loses
  the claim finds the row another replica stored and records what that state calls for in
  the join's place (:class:`LostClaim`, :mod:`fogmesh.registry.claims`).

Kinds are applied in a fixed order (nodes, tenants, workloads, apps, events, heartbeats); no
two kinds write the same columns except ``last_seen``, which the heartbeat writes last.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from fogmesh.protocol import Event

__all__ = [
    "ActualOp",
    "AppOp",
    "Batch",
    "EventOp",
    "HeartbeatOp",
    "HelloOp",
    "JoinClaim",
    "LivenessOp",
    "LostClaim",
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
class JoinClaim:
    """The sign of life that made a node's ``node-joined`` (what a batch that loses the join's
    claim judges the stored node by)."""

    node: str
    via: str
    """``hello``, ``state`` or ``heartbeat``; ``will``: the claim of a will's ``offline`` of a
    node the replica did not know (it has no event of its own, see ``told_instead``)."""
    boot_id: str
    retained: bool
    source: str
    """Who tells the node's events (the replica)."""


@dataclass(frozen=True, slots=True)
class LivenessOp:
    """A node's liveness changed (creates the node row if new); ``join``: the change is the
    node's join, claimed (see :class:`EventOp`)."""

    node: str
    state: str
    at: float
    reason: str = ""
    boot_id: str | None = None
    join: JoinClaim | None = None


@dataclass(frozen=True, slots=True)
class LostClaim:
    """A node's row as a batch that lost the node's join claim found it (another replica
    stored it first), and the event it recorded instead of the join (None: none, and the
    join's liveness was not written: the stored state stands)."""

    state: str
    reason: str
    boot_id: str
    last_seen: float
    """Wall-clock seconds."""
    told: Event | None = None


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
    """An event to record (duplicates by ``id`` are ignored).

    ``claim``: a node whose join this event tells (``node-joined``): recorded only if its
    batch creates the node's row, so of replicas that all took a new node for their own, one
    records (and publishes) its join (see :attr:`Batch.created`)."""

    row: dict[str, Any]
    claim: str | None = None


Op = HelloOp | LivenessOp | ActualOp | AppOp | EventOp


@dataclass(slots=True)
class Batch:
    """One transaction's worth of writes, by kind, coalesced per node (see the module)."""

    hellos: dict[str, HelloOp] = field(default_factory=dict)
    liveness: dict[str, LivenessOp] = field(default_factory=dict)
    online_at: dict[str, float] = field(default_factory=dict)
    """When each node was last recorded online in this batch (its ``last_seen``)."""
    joins: dict[str, tuple[str, float]] = field(default_factory=dict)
    """The state and time of each node's first hello or liveness change in this batch: the
    row it gets if it is new."""
    actuals: dict[str, ActualOp] = field(default_factory=dict)
    apps: list[AppOp] = field(default_factory=list)
    events: list[EventOp] = field(default_factory=list)
    heartbeats: dict[str, HeartbeatOp] = field(default_factory=dict)
    after_commit: list[tuple[Callable[[], None], str | None]] = field(default_factory=list)
    """Callbacks once committed, each with the node it claims (None: run it in any case)."""
    claims: dict[str, JoinClaim] = field(default_factory=dict)
    """The joins the batch claims, by node (from their liveness changes)."""
    created: set[str] = field(default_factory=set)
    """The nodes whose rows this batch created (set by the writer): the claims it won."""
    lost: dict[str, LostClaim] = field(default_factory=dict)
    """The claims of :attr:`claims` it lost (set by the writer)."""
    coalesced: int = 0
    """Operations absorbed by a later one of the same node."""

    @classmethod
    def of(cls, *ops: Op | HeartbeatOp) -> Batch:
        """A batch holding ``ops``, added in order."""
        batch = cls()
        for op in ops:
            batch.add(op)
        return batch

    def add(self, op: Op | HeartbeatOp) -> None:
        """Add one operation, coalescing it with what the batch holds of the same node."""
        match op:
            case HeartbeatOp():
                self._keep_latest(self.heartbeats, op.node, op)
            case HelloOp():
                self.joins.setdefault(op.node, (op.state, op.at))
                self._keep_latest(self.hellos, op.node, op)
            case LivenessOp():
                self.joins.setdefault(op.node, (op.state, op.at))
                if op.join is not None:
                    self.claims.setdefault(op.node, op.join)
                self._liveness(op)
            case ActualOp():
                self._keep_latest(self.actuals, op.node, op)
            case AppOp():
                self.apps.append(op)
            case EventOp():
                self.events.append(op)

    def _keep_latest(self, bucket: dict[str, Any], node: str, op: Any) -> None:
        if node in bucket:
            self.coalesced += 1
        bucket[node] = op

    def _liveness(self, op: LivenessOp) -> None:
        prev = self.liveness.get(op.node)
        if op.state == "online":
            self.online_at[op.node] = op.at
        if prev is not None:
            self.coalesced += 1
            if op.boot_id is None and prev.boot_id is not None:
                op = replace(op, boot_id=prev.boot_id)
        self.liveness[op.node] = op

    def won(self, claim: str | None) -> bool:
        """Whether what claims ``claim`` is this batch's to record and publish."""
        return claim is None or claim in self.created

    def __len__(self) -> int:
        return (
            len(self.hellos)
            + len(self.liveness)
            + len(self.actuals)
            + len(self.apps)
            + len(self.events)
            + len(self.heartbeats)
            + len(self.after_commit)
        )
