"""fogmesh's message contract: the topic tree, a pydantic model for every message, error codes.

This package does no I/O. Services share it and nothing else: no service imports another.
"""

from fogmesh.protocol import topics
from fogmesh.protocol._ids import MAX_ID_LENGTH, Ident, check_id, check_topic
from fogmesh.protocol.commands import (
    AckReply,
    LogsCommand,
    LogsReply,
    ReportCommand,
    ReportReply,
    RestartCommand,
    UploadCommand,
    UploadReply,
)
from fogmesh.protocol.envelope import (
    SCHEMA_VERSION,
    Envelope,
    ErrorReply,
    Reply,
    Request,
    error_info_from_validation,
    new_id,
)
from fogmesh.protocol.errors import (
    BusError,
    ContractError,
    ErrorCode,
    ErrorInfo,
    FieldError,
    FogmeshError,
    NotConnectedError,
    RemoteError,
    RequestTimeout,
)
from fogmesh.protocol.events import Event, EventKind
from fogmesh.protocol.lease import LeaseRecord
from fogmesh.protocol.mesh import LinkState, LinkStatus
from fogmesh.protocol.node import (
    Heartbeat,
    Location,
    NodeFacts,
    NodeHello,
    NodeLiveness,
    NodeStateMessage,
    Usage,
)
from fogmesh.protocol.topics import NodeChannel, TopicKind, TopicRef, parse_topic
from fogmesh.protocol.workload import (
    TRANSITIONS,
    ActualState,
    Artefact,
    DesiredState,
    MigrationKind,
    RestartPolicy,
    RuntimeKind,
    VolumeSpec,
    WorkloadPhase,
    WorkloadSpec,
    WorkloadStatus,
    can_transition,
)

__all__ = [
    "MAX_ID_LENGTH",
    "SCHEMA_VERSION",
    "TRANSITIONS",
    "AckReply",
    "ActualState",
    "Artefact",
    "BusError",
    "ContractError",
    "DesiredState",
    "Envelope",
    "ErrorCode",
    "ErrorInfo",
    "ErrorReply",
    "Event",
    "EventKind",
    "FieldError",
    "FogmeshError",
    "Heartbeat",
    "Ident",
    "LeaseRecord",
    "LinkState",
    "LinkStatus",
    "Location",
    "LogsCommand",
    "LogsReply",
    "MigrationKind",
    "NodeChannel",
    "NodeFacts",
    "NodeHello",
    "NodeLiveness",
    "NodeStateMessage",
    "NotConnectedError",
    "RemoteError",
    "Reply",
    "ReportCommand",
    "ReportReply",
    "Request",
    "RequestTimeout",
    "RestartCommand",
    "RestartPolicy",
    "RuntimeKind",
    "TopicKind",
    "TopicRef",
    "UploadCommand",
    "UploadReply",
    "Usage",
    "VolumeSpec",
    "WorkloadPhase",
    "WorkloadSpec",
    "WorkloadStatus",
    "can_transition",
    "check_id",
    "check_topic",
    "error_info_from_validation",
    "new_id",
    "parse_topic",
    "topics",
]
