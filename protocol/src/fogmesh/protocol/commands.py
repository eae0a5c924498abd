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
    "MAX_UPLOAD_BYTES",
    "AckReply",
    "LogsCommand",
    "LogsReply",
    "NodeVerb",
    "ReportCommand",
    "ReportReply",
    "RestartCommand",
    "UploadCommand",
    "UploadReply",
]

MAX_UPLOAD_BYTES = 4 * 1024 * 1024


class NodeVerb(StrEnum):
    """The commands an agent answers: the ``{verb}`` of ``nodes/{node}/cmd/{verb}``."""

    LOGS = "logs"  # LogsCommand -> LogsReply
    UPLOAD = "upload"  # UploadCommand -> UploadReply
    RESTART = "restart"  # RestartCommand -> AckReply
    REPORT = "report"  # ReportCommand -> ReportReply
    # the migrator's (fogmesh.protocol.migration)
    RESOURCE_REQUEST = "resource-request"  # ResourceRequest -> ResourceOffer
    FREEZE = "freeze"  # FreezeCommand -> FrozenReply
    STATE_CHUNK = "state-chunk"  # StateChunkCommand -> StateChunkReply
    STATE_PUT = "state-put"  # StatePutCommand -> StatePutReply
    THAW = "thaw"  # ThawCommand -> AckReply


class LogsCommand(Request):
    """``cmd/logs``: the last ``tail`` lines of a workload's output, optionally since a time."""

    workload: Ident
    tail: int = Field(default=100, ge=1, le=10_000)
    since: float | None = None


class LogsReply(Reply):
    """The lines, oldest first."""

    workload: Ident
    lines: list[str]


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
