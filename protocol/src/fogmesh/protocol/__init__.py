"""fogmesh's message contract: the topic tree, a pydantic model for every message, error codes.

This package does no I/O. Services share it and nothing else: no service imports another.

Each name below is imported from its module when first asked for (module ``__getattr__``), so
a process loads only the parts of the contract it uses: the node agent never loads the app
manifest nor the registry's queries (docs/agent.md, "Memory").
"""

from typing import TYPE_CHECKING

from fogmesh.protocol._lazy import homes, lazy_exports

if TYPE_CHECKING:  # to a type checker each name is its module's own, nothing else
    from fogmesh.protocol import topics
    from fogmesh.protocol._ids import MAX_ID_LENGTH, Ident, check_id, check_topic
    from fogmesh.protocol.apps import (
        APPS_RESOURCE,
        AppAction,
        AppDeletedReply,
        AppInfo,
        AppListReply,
        AppReply,
        AppSummary,
        DeleteApp,
        DeployApp,
        GetApp,
        ListApps,
        PlacementInfo,
        ScaleApp,
        Unschedulable,
        UpdateApp,
    )
    from fogmesh.protocol.commands import (
        AckReply,
        DownloadCommand,
        DownloadReply,
        LogsCommand,
        LogsReply,
        NodeVerb,
        ReportCommand,
        ReportReply,
        RestartCommand,
        StartCommand,
        StopCommand,
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
    from fogmesh.protocol.events import (
        EVENT_DATA,
        AppEventData,
        DesiredRejectedData,
        DeviceLostData,
        Event,
        EventData,
        EventKind,
        MigrationData,
        NodeEventData,
        NotRunningData,
        PlacementFailedData,
        ReplacedData,
        SiteEventData,
        WorkloadStateData,
    )
    from fogmesh.protocol.lease import LeaseRecord
    from fogmesh.protocol.manifest import (
        AppManifest,
        ComponentSpec,
        Placement,
        Resources,
        load_manifest_text,
        parse_label_expr,
    )
    from fogmesh.protocol.mesh import LinkState, LinkStatus
    from fogmesh.protocol.node import (
        DeviceInfo,
        Heartbeat,
        Location,
        NodeFacts,
        NodeHello,
        NodeLiveness,
        NodeStateMessage,
        Usage,
    )
    from fogmesh.protocol.queries import (
        EVENTS_RESOURCE,
        MAX_PAGE,
        NODES_RESOURCE,
        REGISTRY_APPS_RESOURCE,
        WORKLOADS_RESOURCE,
        EventListReply,
        GetNode,
        GetRegistryApp,
        ListEvents,
        ListNodes,
        ListRegistryApps,
        ListWorkloads,
        NearFilter,
        NodeInfo,
        NodeListReply,
        NodeReply,
        RegistryAppInfo,
        RegistryAppListReply,
        RegistryAppReply,
        UsageSample,
        WorkloadInfo,
        WorkloadListReply,
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
    "APPS_RESOURCE",
    "EVENTS_RESOURCE",
    "EVENT_DATA",
    "MAX_ID_LENGTH",
    "MAX_PAGE",
    "NODES_RESOURCE",
    "REGISTRY_APPS_RESOURCE",
    "SCHEMA_VERSION",
    "TRANSITIONS",
    "WORKLOADS_RESOURCE",
    "AckReply",
    "ActualState",
    "AppAction",
    "AppDeletedReply",
    "AppEventData",
    "AppInfo",
    "AppListReply",
    "AppManifest",
    "AppReply",
    "AppSummary",
    "Artefact",
    "BusError",
    "ComponentSpec",
    "ContractError",
    "DeleteApp",
    "DeployApp",
    "DesiredRejectedData",
    "DesiredState",
    "DeviceInfo",
    "DeviceLostData",
    "DownloadCommand",
    "DownloadReply",
    "Envelope",
    "ErrorCode",
    "ErrorInfo",
    "ErrorReply",
    "Event",
    "EventData",
    "EventKind",
    "EventListReply",
    "FieldError",
    "FogmeshError",
    "GetApp",
    "GetNode",
    "GetRegistryApp",
    "Heartbeat",
    "Ident",
    "LeaseRecord",
    "LinkState",
    "LinkStatus",
    "ListApps",
    "ListEvents",
    "ListNodes",
    "ListRegistryApps",
    "ListWorkloads",
    "Location",
    "LogsCommand",
    "LogsReply",
    "MigrationData",
    "MigrationKind",
    "NearFilter",
    "NodeChannel",
    "NodeEventData",
    "NodeFacts",
    "NodeHello",
    "NodeInfo",
    "NodeListReply",
    "NodeLiveness",
    "NodeReply",
    "NodeStateMessage",
    "NodeVerb",
    "NotConnectedError",
    "NotRunningData",
    "Placement",
    "PlacementFailedData",
    "PlacementInfo",
    "RegistryAppInfo",
    "RegistryAppListReply",
    "RegistryAppReply",
    "RemoteError",
    "ReplacedData",
    "Reply",
    "ReportCommand",
    "ReportReply",
    "Request",
    "RequestTimeout",
    "Resources",
    "RestartCommand",
    "RestartPolicy",
    "RuntimeKind",
    "ScaleApp",
    "SiteEventData",
    "StartCommand",
    "StopCommand",
    "TopicKind",
    "TopicRef",
    "Unschedulable",
    "UpdateApp",
    "UploadCommand",
    "UploadReply",
    "Usage",
    "UsageSample",
    "VolumeSpec",
    "WorkloadInfo",
    "WorkloadListReply",
    "WorkloadPhase",
    "WorkloadSpec",
    "WorkloadStateData",
    "WorkloadStatus",
    "can_transition",
    "check_id",
    "check_topic",
    "error_info_from_validation",
    "load_manifest_text",
    "new_id",
    "parse_label_expr",
    "parse_topic",
    "topics",
]

_HOMES = homes(
    {  # module -> the names of __all__ it defines
        "_ids": "check_id check_topic Ident MAX_ID_LENGTH",
        "apps": (
            "AppAction AppDeletedReply AppInfo AppListReply AppReply APPS_RESOURCE AppSummary"
            " DeleteApp DeployApp GetApp ListApps PlacementInfo ScaleApp Unschedulable UpdateApp"
        ),
        "commands": (
            "AckReply DownloadCommand DownloadReply LogsCommand LogsReply NodeVerb"
            " ReportCommand ReportReply RestartCommand StartCommand StopCommand UploadCommand"
            " UploadReply"
        ),
        "envelope": (
            "Envelope error_info_from_validation ErrorReply new_id Reply Request SCHEMA_VERSION"
        ),
        "errors": (
            "BusError ContractError ErrorCode ErrorInfo FieldError FogmeshError"
            " NotConnectedError RemoteError RequestTimeout"
        ),
        "events": (
            "AppEventData DesiredRejectedData DeviceLostData Event EVENT_DATA EventData"
            " EventKind MigrationData NodeEventData NotRunningData PlacementFailedData"
            " ReplacedData SiteEventData WorkloadStateData"
        ),
        "lease": "LeaseRecord",
        "manifest": (
            "AppManifest ComponentSpec load_manifest_text parse_label_expr Placement Resources"
        ),
        "mesh": "LinkState LinkStatus",
        "node": (
            "DeviceInfo Heartbeat Location NodeFacts NodeHello NodeLiveness NodeStateMessage Usage"
        ),
        "queries": (
            "EventListReply EVENTS_RESOURCE GetNode GetRegistryApp ListEvents ListNodes"
            " ListRegistryApps ListWorkloads MAX_PAGE NearFilter NodeInfo NodeListReply"
            " NodeReply NODES_RESOURCE REGISTRY_APPS_RESOURCE RegistryAppInfo"
            " RegistryAppListReply RegistryAppReply UsageSample WorkloadInfo WorkloadListReply"
            " WORKLOADS_RESOURCE"
        ),
        "topics": "NodeChannel parse_topic TopicKind TopicRef topics",
        "workload": (
            "ActualState Artefact can_transition DesiredState MigrationKind RestartPolicy"
            " RuntimeKind TRANSITIONS VolumeSpec WorkloadPhase WorkloadSpec WorkloadStatus"
        ),
    }
)

if not TYPE_CHECKING:  # a type checker sees the imports above instead
    __getattr__ = lazy_exports(__name__, globals(), _HOMES)
