"""A tenant's commands to its own workloads: ``fm/v1/api/{tenant}/workloads/{action}``.

The registry serves ``list`` itself and relays every other action to the agent of the node
where the tenant's workload runs (``fm/v1/nodes/{node}/cmd/{verb}``, with the topic's tenant
set), so a tenant needs no access to ``nodes/`` topics. A request's body is the node command's
model (:data:`WORKLOAD_ACTIONS`); its reply is the agent's, readdressed to the requester. A
workload the tenant does not run, another tenant's included, is ``not_found``.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from fogmesh.protocol import commands
from fogmesh.protocol.envelope import Reply, Request

__all__ = ["FILE_RELAY_TIMEOUT_S", "RELAY_TIMEOUT_S", "WORKLOAD_ACTIONS", "WorkloadAction"]

RELAY_TIMEOUT_S: Final = 15.0
"""How long the registry waits for a node's answer before it answers ``unavailable``."""
FILE_RELAY_TIMEOUT_S: Final = 45.0
"""The same for ``upload`` and ``download`` (up to 4 MiB each way)."""


class WorkloadAction(StrEnum):
    """The ``{action}`` of ``fm/v1/api/{tenant}/workloads/{action}``."""

    LIST = "list"  # ListWorkloads -> WorkloadListReply (the registry's own)
    LOGS = "logs"  # LogsCommand -> LogsReply (a stream of them with follow_s)
    STOP = "stop"  # StopCommand -> AckReply
    START = "start"  # StartCommand -> AckReply
    RESTART = "restart"  # RestartCommand -> AckReply
    UPLOAD = "upload"  # UploadCommand -> UploadReply
    DOWNLOAD = "download"  # DownloadCommand -> DownloadReply


WORKLOAD_ACTIONS: Final[
    dict[WorkloadAction, tuple[commands.NodeVerb, type[Request], type[Reply]]]
] = {
    WorkloadAction.LOGS: (commands.NodeVerb.LOGS, commands.LogsCommand, commands.LogsReply),
    WorkloadAction.STOP: (commands.NodeVerb.STOP, commands.StopCommand, commands.AckReply),
    WorkloadAction.START: (commands.NodeVerb.START, commands.StartCommand, commands.AckReply),
    WorkloadAction.RESTART: (commands.NodeVerb.RESTART, commands.RestartCommand, commands.AckReply),
    WorkloadAction.UPLOAD: (commands.NodeVerb.UPLOAD, commands.UploadCommand, commands.UploadReply),
    WorkloadAction.DOWNLOAD: (
        commands.NodeVerb.DOWNLOAD,
        commands.DownloadCommand,
        commands.DownloadReply,
    ),
}
"""Each relayed action: the agent's verb it becomes, its request's and its reply's model."""
