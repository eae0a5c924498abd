"""Migrations: moving one workload from its node to a peer, with its state (docs/migrator.md).

Three parties speak here:

* a user or operator asks the migrator on ``fm/v1/api/{tenant}/migrations/{action}``:
  ``migrate`` (:class:`MigrateWorkload`) or ``drain`` (:class:`DrainNode`), answered with a
  :class:`MigrationReply`;
* the migrator asks the scheduler leader, the only writer of desired state, on
  ``fm/v1/ops/scheduler/move`` (:class:`MoveWorkload`, answered with a :class:`MoveReply`):
  with ``dry_run`` the scheduler only says which candidate its placement would pick;
* the migrator asks agents on their command topics: ``resource-request``
  (:class:`ResourceRequest` -> :class:`ResourceOffer`, the paper's levels 0/1/2), ``freeze``
  (:class:`FreezeCommand` -> :class:`FrozenReply`), ``state-chunk``
  (:class:`StateChunkCommand` -> :class:`StateChunkReply`), ``state-put``
  (:class:`StatePutCommand` -> :class:`StatePutReply`), ``thaw`` (:class:`ThawCommand`),
  ``state-receive`` (:class:`StateReceiveCommand`), ``state-send`` (:class:`StateSendCommand`
  -> :class:`StateSendReply`) and ``state-drop`` (:class:`StateDropCommand`);
* agents talk to each other for one thing only: the source agent pushes a snapshot's chunks
  to the peer's ``state-put``, peer to peer over their site broker, for a handover the
  migrator told both of (``state-receive`` to the peer, ``state-send`` to the source, one
  random ``token`` to both).

State is files (a snapshot tar of the volumes or the native working directory's ``state/``):
CRIU does not run on the target kernels, so a process's memory is never moved.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum

from pydantic import Field

from fogmesh.protocol._ids import Ident
from fogmesh.protocol.envelope import Envelope, Reply, Request

__all__ = [
    "HOLDERS_VERB",
    "MAX_CHUNK_BYTES",
    "MIGRATIONS_RESOURCE",
    "DrainNode",
    "FreezeCommand",
    "FrozenReply",
    "MigrateWorkload",
    "MigrationAction",
    "MigrationReply",
    "MigrationTrigger",
    "MoveReply",
    "MoveWorkload",
    "NodeTrouble",
    "PeerLevel",
    "ReplicaHolders",
    "ResourceOffer",
    "ResourceRequest",
    "StageOutcome",
    "StateChunkCommand",
    "StateChunkReply",
    "StateDropCommand",
    "StatePutCommand",
    "StatePutReply",
    "StateReceiveCommand",
    "StateSendCommand",
    "StateSendReply",
    "ThawCommand",
    "TroubleKind",
]

MIGRATIONS_RESOURCE = "migrations"
"""The ``{resource}`` level of the migrator's API topics."""

HOLDERS_VERB = "holders"
"""``fm/v1/ops/scheduler/holders``: :class:`ReplicaHolders` (migrator -> scheduler leader)."""

MAX_CHUNK_BYTES = 256 * 1024
"""The largest state chunk one message carries (before base64)."""

_SHA256 = r"^[0-9a-f]{64}$"
_NONCE = r"^[0-9a-f]{32,64}$"


class MigrationAction(StrEnum):
    """The ``{action}`` level of ``fm/v1/api/{tenant}/migrations/{action}``."""

    MIGRATE = "migrate"
    DRAIN = "drain"


class MigrationTrigger(StrEnum):
    """Why a workload moves (carried on every migration event)."""

    NODE_LOST = "node-lost"
    OVERLOAD = "overload"
    DRAIN = "drain"
    BY_HAND = "by-hand"
    NODE_ASKS = "node-asks"
    DEVICE_LOST = "device-lost"


class TroubleKind(StrEnum):
    """What an agent sees coming when it asks for its workloads to move."""

    DISK_FULL = "disk-full"
    RUNTIME_FAILING = "runtime-failing"


class NodeTrouble(Envelope):
    """``fm/v1/nodes/{node}/trouble``: the agent sees trouble coming (its disk nearly full, a
    runtime failing) and asks that its workloads move, the paper's "local framework in the
    primary edge node predicts the node failure". Sent when the trouble starts and again every
    ``trouble_repeat_s`` while it lasts; the migrator moves the node's workloads (trigger
    ``node-asks``, held by the cool-down and the node's budget like every automatic move)."""

    node: Ident
    kind: TroubleKind
    detail: str = Field(default="", max_length=1024)


class PeerLevel(IntEnum):
    """The paper's collaboration levels of a peer (section 5.1)."""

    RELAY = 0  # can pass messages on, nothing more
    STORE = 1  # can store the workload and its state, cannot run it now
    RUN = 2  # can run it now: runtime, CPU, memory and disk


class MigrateWorkload(Request):
    """``migrations/migrate``: move one of the tenant's workloads (``--to`` a node, or to the
    best peer)."""

    workload: Ident
    to: Ident | None = None


class DrainNode(Request):
    """``migrations/drain``: move every workload off ``node`` (the tenant's, or every tenant's
    when an operator asks without one)."""

    node: Ident


class StageOutcome(StrEnum):
    """How one workload's migration ended."""

    MOVED = "moved"
    FAILED = "failed"
    SKIPPED = "skipped"


class MigrationReply(Reply):
    """The outcome of each workload the request concerned."""

    outcomes: dict[str, StageOutcome] = Field(default_factory=dict)
    peers: dict[str, str] = Field(default_factory=dict, description="workload -> new node")
    reasons: dict[str, str] = Field(default_factory=dict, description="workload -> why not")


class MoveWorkload(Request):
    """``apps/move``: re-home one replica. The scheduler leader records the move and writes
    both nodes' desired states; with ``dry_run`` it only names the node it would pick."""

    workload: Ident
    to: Ident | None = Field(default=None, description="this node, else the best candidate")
    candidates: list[Ident] = Field(
        default_factory=list, description="choose among these (empty: any node)"
    )
    snapshot: str | None = Field(default=None, max_length=128, description="state staged there")
    trigger: MigrationTrigger = MigrationTrigger.BY_HAND
    dry_run: bool = False


class MoveReply(Reply):
    """Where the workload was and is now (or, with ``dry_run``, would be)."""

    workload: Ident
    from_node: Ident | None = None
    to_node: Ident


class ResourceRequest(Request):
    """``cmd/resource-request``: could this node take the workload (its runtime, CPU and
    memory requests, its state's size)?"""

    workload: Ident
    runtime: str = Field(max_length=32)
    cpu: float = Field(default=0.0, ge=0, description="cores requested")
    memory_bytes: int = Field(default=0, ge=0)
    state_bytes: int = Field(default=0, ge=0)


class ResourceOffer(Reply):
    """The peer's level and, below 2, why not."""

    node: Ident
    level: PeerLevel
    reason: str = Field(default="", max_length=512)


class FreezeCommand(Request):
    """``cmd/freeze``: hold the workload (the agent stops it and restarts it no more), then
    snapshot its state into a staged file. With ``hold`` false the workload keeps running and
    only its snapshot is staged (a replica for unplanned moves); ``thaw`` drops it."""

    workload: Ident
    hold: bool = Field(default=True, description="false: snapshot only, the workload runs on")


class FrozenReply(Reply):
    """The staged snapshot: its id, size and sha256."""

    workload: Ident
    snapshot: str = Field(min_length=1, max_length=128)
    size: int = Field(ge=0)
    sha256: str = Field(pattern=_SHA256)


class StateChunkCommand(Request):
    """``cmd/state-chunk``: read ``length`` bytes at ``offset`` of a staged snapshot."""

    snapshot: str = Field(min_length=1, max_length=128)
    offset: int = Field(ge=0)
    length: int = Field(gt=0, le=MAX_CHUNK_BYTES)


class StateChunkReply(Reply):
    """One chunk (base64) and its sha256."""

    snapshot: str
    offset: int = Field(ge=0)
    data_b64: str = Field(max_length=(MAX_CHUNK_BYTES * 4) // 3 + 4)
    sha256: str = Field(pattern=_SHA256)


class StatePutCommand(Request):
    """``cmd/state-put``: append one chunk to the snapshot staged for ``workload``.

    A chunk at another offset than the one the peer needs next is not written; the reply names
    the offset it needs (so a transfer resumes where it stopped). A chunk whose sha256 does not
    match is refused. An empty chunk asks for the next offset only.
    """

    workload: Ident
    snapshot: str = Field(min_length=1, max_length=128)
    size: int = Field(ge=0, description="the whole snapshot's bytes")
    sha256_total: str = Field(pattern=_SHA256)
    offset: int = Field(ge=0)
    data_b64: str = Field(default="", max_length=(MAX_CHUNK_BYTES * 4) // 3 + 4)
    sha256: str | None = Field(default=None, pattern=_SHA256)
    token: str | None = Field(
        default=None, pattern=_NONCE, description="the handover's token (state-receive)"
    )


class StatePutReply(Reply):
    """The offset the peer needs next; ``complete`` once every byte is in and checked."""

    next_offset: int = Field(ge=0)
    complete: bool = False


class ThawCommand(Request):
    """``cmd/thaw``: release a held workload (the move failed: it runs here again) and drop
    its staged snapshot."""

    workload: Ident


class StateReceiveCommand(Request):
    """``cmd/state-receive`` (migrator -> peer): expect ``snapshot`` of ``workload`` from
    ``from_node``. Only ``state-put`` chunks carrying this ``token`` are taken for it; another
    node's (or tenant's) chunks without it are refused."""

    workload: Ident
    snapshot: str = Field(min_length=1, max_length=128)
    size: int = Field(ge=0)
    sha256_total: str = Field(pattern=_SHA256)
    from_node: Ident
    token: str = Field(pattern=_NONCE)


class StateSendCommand(Request):
    """``cmd/state-send`` (migrator -> source): push the staged ``snapshot`` to ``to``'s
    ``state-put`` in chunks of ``chunk_bytes``, at most ``window`` unanswered at a time,
    starting where the peer stands (so a second send resumes a cut one). A newer send of the
    same snapshot supersedes a running one. Answered once the peer has it all."""

    workload: Ident
    snapshot: str = Field(min_length=1, max_length=128)
    size: int = Field(ge=0)
    sha256_total: str = Field(pattern=_SHA256)
    to: Ident
    token: str = Field(pattern=_NONCE)
    chunk_bytes: int = Field(default=MAX_CHUNK_BYTES, gt=0, le=MAX_CHUNK_BYTES)
    window: int = Field(default=4, ge=1, le=16)
    chunk_timeout_s: float = Field(default=10.0, gt=0, le=300)


class StateSendReply(Reply):
    """The push ended with the whole snapshot at the peer."""

    workload: Ident
    snapshot: str
    resumed_at: int = Field(ge=0, description="the offset the peer stood at when this began")
    sent_bytes: int = Field(ge=0, description="chunk bytes this push sent, resent ones too")


class StateDropCommand(Request):
    """``cmd/state-drop``: forget every staged snapshot of ``workload`` (a replica or a
    transfer's) on this node: the workload was deleted or deployed anew, or its move failed,
    so that copy must never be restored."""

    workload: Ident


class ReplicaHolders(Request):
    """``fm/v1/ops/scheduler/holders`` (migrator -> scheduler leader, answered ``AckReply``):
    the nodes holding a replica of ``workload``'s state. Re-placing it after its node's
    death, the scheduler tries these (by its filter and cost) before every other node, so the
    replacement starts from the replica. Empty: it has none any more."""

    workload: Ident
    holders: list[Ident] = Field(default_factory=list, max_length=16)
