"""Commands to one node's agent on ``nodes/{node}/cmd/{verb}``, and their replies.

Every command names the tenant it acts for; the agent refuses (``unauthorised``) a command
whose tenant does not own the workload.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from fogmesh.protocol._ids import Ident
from fogmesh.protocol.envelope import Reply, Request
from fogmesh.protocol.node import NodeFacts, Usage
from fogmesh.protocol.workload import WorkloadStatus

__all__ = [
    "MAX_FOLLOW_S",
    "MAX_UPLOAD_BYTES",
    "AckReply",
    "DownloadCommand",
    "DownloadReply",
    "LogsCommand",
    "LogsReply",
    "NodeVerb",
    "ReportCommand",
    "ReportReply",
    "RestartCommand",
    "StartCommand",
    "StopCommand",
    "UploadCommand",
    "UploadReply",
]

MAX_UPLOAD_BYTES = 4 * 1024 * 1024
"""The largest file an upload puts into, or a download takes out of, a workload."""
MAX_FOLLOW_S = 600.0
"""The longest a ``logs`` follow streams before its final reply."""


class NodeVerb(StrEnum):
    """The commands an agent answers: the ``{verb}`` of ``nodes/{node}/cmd/{verb}``."""

    LOGS = "logs"  # LogsCommand -> LogsReply
    UPLOAD = "upload"  # UploadCommand -> UploadReply
    RESTART = "restart"  # RestartCommand -> AckReply
    REPORT = "report"  # ReportCommand -> ReportReply
    STOP = "stop"  # StopCommand -> AckReply
    START = "start"  # StartCommand -> AckReply
    DOWNLOAD = "download"  # DownloadCommand -> DownloadReply
    # the migrator's (fogmesh.protocol.migration)
    RESOURCE_REQUEST = "resource-request"  # ResourceRequest -> ResourceOffer
    FREEZE = "freeze"  # FreezeCommand -> FrozenReply
    STATE_CHUNK = "state-chunk"  # StateChunkCommand -> StateChunkReply
    STATE_PUT = "state-put"  # StatePutCommand -> StatePutReply
    THAW = "thaw"  # ThawCommand -> AckReply
    STATE_RECEIVE = "state-receive"  # StateReceiveCommand -> AckReply
    STATE_SEND = "state-send"  # StateSendCommand -> StateSendReply
    STATE_DROP = "state-drop"  # StateDropCommand -> AckReply


class LogsCommand(Request):
    """``cmd/logs``: the last ``tail`` lines of a workload's output, optionally since a time.

    With ``follow_s`` the answer is a stream: replies numbered by ``seq`` from 0 (the tail),
    each with the lines written since the one before, until one with ``final`` set, sent when
    ``follow_s`` seconds have passed or a ``logs`` command with ``end_follow`` set to this
    command's ``correlation_id`` (same tenant) asks for it.
    """

    workload: Ident
    tail: int = Field(default=100, ge=1, le=10_000)
    since: float | None = None
    follow_s: float = Field(default=0.0, ge=0.0, le=MAX_FOLLOW_S)
    end_follow: str | None = Field(default=None, min_length=1, max_length=128)


class LogsReply(Reply):
    """The lines, oldest first; ``seq`` and ``final`` number a follow's stream."""

    workload: Ident
    lines: list[str]
    seq: int = Field(default=0, ge=0)
    final: bool = True


class UploadCommand(Request):
    """``cmd/upload``: put a file into a workload (base64 content, at most 4 MiB decoded)."""

    workload: Ident
    path: str = Field(min_length=2, max_length=1024, pattern=r"^/")
    content_b64: str = Field(max_length=(MAX_UPLOAD_BYTES * 4) // 3 + 4)
    mode: int = Field(default=0o644, ge=0, le=0o777, description="no setuid, setgid or sticky bits")


class UploadReply(Reply):
    """Where the file went and how big it is."""

    workload: Ident
    path: str
    size: int


class RestartCommand(Request):
    """``cmd/restart``: stop and start a workload."""

    workload: Ident


class StopCommand(Request):
    """``cmd/stop``: stop a workload and keep it stopped (the reconciler leaves it alone, also
    after the agent restarts) until ``start``."""

    workload: Ident


class StartCommand(Request):
    """``cmd/start``: start a workload stopped by ``stop`` (the reconciler runs it again)."""

    workload: Ident


class DownloadCommand(Request):
    """``cmd/download``: read one file out of a workload (at most 4 MiB)."""

    workload: Ident
    path: str = Field(min_length=2, max_length=1024, pattern=r"^/")


class DownloadReply(Reply):
    """The file's content in base64."""

    workload: Ident
    path: str
    size: int
    content_b64: str


class ReportCommand(Request):
    """``cmd/report``: the node's facts, usage and workloads, now."""


class ReportReply(Reply):
    """The node's answer to ``report``; only the asking tenant's workloads are listed."""

    node: Ident
    facts: NodeFacts
    usage: Usage
    workloads: list[WorkloadStatus]


class AckReply(Reply):
    """A command was carried out."""

    message: str = ""
