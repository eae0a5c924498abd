"""Every topic of the tree with its message model, direction, QoS and retain flag.

This table is the single source of ``docs/topics.md`` (see :mod:`fogmesh.protocol.docs`); a test
fails when the document is stale.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from fogmesh.protocol.accounts import AccountRecord, JoinReply, JoinRequest, TenantRecord
from fogmesh.protocol.apps import (
    AppDeletedReply,
    AppListReply,
    AppReply,
    DeleteApp,
    DeployApp,
    GetApp,
    ListApps,
    ScaleApp,
    UpdateApp,
)
from fogmesh.protocol.appstore import StoredApp
from fogmesh.protocol.artefacts import (
    ArtefactInfo,
    ArtefactList,
    ChunkData,
    DeleteArtefact,
    FetchArtefact,
    FetchReady,
    ListArtefacts,
    PushChunk,
    PushStatus,
    ReadChunk,
    StatArtefact,
)
from fogmesh.protocol.audit import AuditRecord
from fogmesh.protocol.cache_status import CacheStatus, CacheStatusRequest
from fogmesh.protocol.commands import (
    AckReply,
    DownloadCommand,
    DownloadReply,
    LogsCommand,
    LogsReply,
    ReportCommand,
    ReportReply,
    RestartCommand,
    StartCommand,
    StopCommand,
    UploadCommand,
    UploadReply,
)
from fogmesh.protocol.envelope import ErrorReply
from fogmesh.protocol.events import Event
from fogmesh.protocol.lease import LeaseRecord
from fogmesh.protocol.mesh import HandedOnMessage, LinkStatus, SessionClaim
from fogmesh.protocol.migration import (
    DrainNode,
    FreezeCommand,
    FrozenReply,
    MigrateWorkload,
    MigrationReply,
    MoveReply,
    MoveWorkload,
    NodeTrouble,
    ReplicaHolders,
    ResourceOffer,
    ResourceRequest,
    StateChunkCommand,
    StateChunkReply,
    StateDropCommand,
    StatePutCommand,
    StatePutReply,
    StateReceiveCommand,
    StateSendCommand,
    StateSendReply,
    ThawCommand,
)
from fogmesh.protocol.node import Heartbeat, NodeHello, NodeStateMessage
from fogmesh.protocol.workload import ActualState, DesiredState

__all__ = ["CATALOGUE", "TopicSpec"]


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """One topic pattern of the tree and what travels on it."""

    pattern: str
    model: type[BaseModel] | None
    publisher: str
    subscribers: str
    qos: int
    retained: bool
    summary: str
    reply: tuple[type[BaseModel], ...] = ()
    payload: str = ""  # what travels when there is no single model


CATALOGUE: tuple[TopicSpec, ...] = (
    TopicSpec(
        "fm/v1/nodes/{node}/hello",
        NodeHello,
        "node agent",
        "registry, scheduler",
        1,
        True,
        "The node's facts, at agent start and after every reconnect.",
    ),
    TopicSpec(
        "fm/v1/nodes/{node}/state",
        NodeStateMessage,
        "node agent (its last will: broker)",
        "registry, scheduler",
        1,
        True,
        "`online` at connect; the broker publishes the agent's last will `offline` the "
        "moment its session dies.",
    ),
    TopicSpec(
        "fm/v1/nodes/{node}/heartbeat",
        Heartbeat,
        "node agent",
        "registry, scheduler",
        0,
        False,
        "Usage and each workload's status, every few seconds.",
    ),
    TopicSpec(
        "fm/v1/nodes/{node}/trouble",
        NodeTrouble,
        "node agent",
        "migrator",
        1,
        False,
        "The agent sees trouble coming (disk nearly full, a runtime failing) and asks that "
        "its workloads move; again every `trouble_repeat_s` while it lasts.",
    ),
    TopicSpec(
        "fm/v1/nodes/{node}/desired",
        DesiredState,
        "scheduler (lease holder), migrator",
        "that node's agent",
        1,
        True,
        "Every workload the node should run; never written by the node.",
    ),
    TopicSpec(
        "fm/v1/nodes/{node}/actual",
        ActualState,
        "that node's agent",
        "registry, scheduler",
        1,
        True,
        "What runs, with each workload's phase.",
    ),
    TopicSpec(
        "fm/v1/nodes/{node}/cmd/logs",
        LogsCommand,
        "operator, CLI",
        "that node's agent",
        1,
        False,
        "The last lines of a workload's output.",
        (LogsReply, ErrorReply),
    ),
    TopicSpec(
        "fm/v1/nodes/{node}/cmd/upload",
        UploadCommand,
        "operator, CLI",
        "that node's agent",
        1,
        False,
        "Put a file into a workload.",
        (UploadReply, ErrorReply),
    ),
    TopicSpec(
        "fm/v1/nodes/{node}/cmd/restart",
        RestartCommand,
        "operator, CLI",
        "that node's agent",
        1,
        False,
        "Stop and start a workload.",
        (AckReply, ErrorReply),
    ),
    *(
        TopicSpec(
            f"fm/v1/nodes/{{node}}/cmd/{verb}",
            request,
            "operator, registry (for a tenant)",
            "that node's agent",
            1,
            False,
            summary,
            (answer, ErrorReply),
        )
        for verb, request, answer, summary in (
            ("stop", StopCommand, AckReply, "Stop a workload and keep it stopped until start."),
            ("start", StartCommand, AckReply, "Start a workload a stop holds."),
            ("download", DownloadCommand, DownloadReply, "Read one file out of a workload."),
        )
    ),
    *(
        TopicSpec(
            f"fm/v1/api/{{tenant}}/workloads/{action}",
            request,
            "users, CLI",
            "registry (relays to the workload's agent)",
            1,
            False,
            summary,
            (answer, ErrorReply),
        )
        for action, request, answer, summary in (
            (
                "logs",
                LogsCommand,
                LogsReply,
                "A workload's last lines; with follow_s a stream (seq, final) from its agent.",
            ),
            ("stop", StopCommand, AckReply, "Stop a workload of the tenant, kept stopped."),
            ("start", StartCommand, AckReply, "Start a workload the tenant stopped."),
            ("restart", RestartCommand, AckReply, "Stop and start a workload of the tenant."),
            ("upload", UploadCommand, UploadReply, "Put a file into a workload of the tenant."),
            ("download", DownloadCommand, DownloadReply, "Read a file out of one."),
        )
    ),
    TopicSpec(
        "fm/v1/nodes/{node}/cmd/report",
        ReportCommand,
        "operator, CLI",
        "that node's agent",
        1,
        False,
        "Facts, usage and workloads, now.",
        (ReportReply, ErrorReply),
    ),
    *(
        TopicSpec(
            f"fm/v1/api/{{tenant}}/apps/{action}",
            request,
            "users, CLI, Node-RED",
            "scheduler (lease holder)",
            1,
            False,
            summary,
            (answer, ErrorReply),
        )
        for action, request, answer, summary in (
            ("deploy", DeployApp, AppReply, "Place a new app; the reply lists its placements."),
            ("update", UpdateApp, AppReply, "A new version: started before the old one stops."),
            ("scale", ScaleApp, AppReply, "Set a component's replica count."),
            ("delete", DeleteApp, AppDeletedReply, "Remove an app and its workloads."),
            ("list", ListApps, AppListReply, "The tenant's apps."),
            ("get", GetApp, AppReply, "One app with its manifest and placements."),
        )
    ),
    *(
        TopicSpec(
            f"fm/v1/nodes/{{node}}/cmd/{verb}",
            request,
            "migrator",
            "that node's agent",
            1,
            False,
            summary,
            (answer, ErrorReply),
        )
        for verb, request, answer, summary in (
            (
                "resource-request",
                ResourceRequest,
                ResourceOffer,
                "Could this node take the workload: level 2 (run), 1 (store) or 0 (relay).",
            ),
            (
                "freeze",
                FreezeCommand,
                FrozenReply,
                "Stop and hold a workload, stage its state's snapshot.",
            ),
            (
                "state-chunk",
                StateChunkCommand,
                StateChunkReply,
                "One chunk of a staged snapshot, with its sha256.",
            ),
            (
                "state-put",
                StatePutCommand,
                StatePutReply,
                "Append one checked chunk of an expected handover (its token) to the snapshot"
                " staged here; says the next offset. Sent by the source node's agent, peer to"
                " peer (and the migrator's empty probes).",
            ),
            ("thaw", ThawCommand, AckReply, "Release a frozen workload (the move failed)."),
            (
                "state-receive",
                StateReceiveCommand,
                AckReply,
                "Expect a snapshot from a source node: take only chunks with this token.",
            ),
            (
                "state-send",
                StateSendCommand,
                StateSendReply,
                "Push a staged snapshot to a peer's state-put, resuming at the peer's offset.",
            ),
            (
                "state-drop",
                StateDropCommand,
                AckReply,
                "Forget every staged snapshot of a workload (deleted, deployed anew, or moved"
                " elsewhere): it is never restored.",
            ),
        )
    ),
    TopicSpec(
        "fm/v1/ops/scheduler/move",
        MoveWorkload,
        "migrator",
        "scheduler (lease holder)",
        1,
        False,
        "Re-home one replica (dry_run: only name the node it would pick).",
        (MoveReply, ErrorReply),
    ),
    TopicSpec(
        "fm/v1/ops/scheduler/holders",
        ReplicaHolders,
        "migrator",
        "scheduler (lease holder)",
        1,
        False,
        "Where a workload's state replica waits: re-placed after a death, it goes there first.",
        (AckReply, ErrorReply),
    ),
    *(
        TopicSpec(
            f"fm/v1/api/{{tenant}}/migrations/{action}",
            request,
            "users, CLI",
            "migrator (lease holder)",
            1,
            False,
            summary,
            (MigrationReply, ErrorReply),
        )
        for action, request, summary in (
            ("migrate", MigrateWorkload, "Move one workload, with its state."),
            ("drain", DrainNode, "Move the tenant's workloads off a node."),
        )
    ),
    *(
        TopicSpec(
            f"fm/v1/api/{{tenant}}/artefacts/{action}",
            request,
            "users, CLI (fogmesh push), dashboards",
            "artefact store",
            1,
            False,
            summary,
            (answer, ErrorReply),
        )
        for action, request, answer, summary in (
            (
                "push",
                PushChunk,
                PushStatus,
                "One chunk of an upload (no data: where it stands); resumable, checked per "
                "chunk and whole, within the tenant's quota.",
            ),
            ("list", ListArtefacts, ArtefactList, "The tenant's artefacts and its quota."),
            ("delete", DeleteArtefact, ArtefactList, "Drop the tenant's hold on an artefact."),
        )
    ),
    TopicSpec(
        "fm/v1/ops/artefacts/stat",
        StatArtefact,
        "site artefact caches",
        "artefact store",
        1,
        False,
        "Size and name of an artefact if the tenant holds it (else not_found).",
        (ArtefactInfo, ErrorReply),
    ),
    TopicSpec(
        "fm/v1/ops/artefacts/read",
        ReadChunk,
        "site artefact caches",
        "artefact store",
        1,
        False,
        "One chunk of a stored artefact.",
        (ChunkData, ErrorReply),
    ),
    TopicSpec(
        "fm/v1/ops/cache-{site}/artefact-fetch",
        FetchArtefact,
        "node agents",
        "the site's artefact cache",
        1,
        False,
        "A ref a workload of the tenant runs: the cache pulls it from the store once and "
        "answers a one-time download URL on the site's LAN.",
        (FetchReady, ErrorReply),
    ),
    TopicSpec(
        "fm/v1/ops/cache-{site}/status",
        CacheStatusRequest,
        "operators, dashboards, the artefact store (for a tenant)",
        "the site's artefact cache",
        1,
        False,
        "What the cache holds (ref, size, tenants, last use), its pulls in progress with "
        "their offset and its bytes used of max_bytes; one tenant's refs when it names one.",
        (CacheStatus, ErrorReply),
    ),
    TopicSpec(
        "fm/v1/api/{tenant}/artefacts/cache-status",
        CacheStatusRequest,
        "users, dashboards",
        "artefact store (asks the site's cache)",
        1,
        False,
        "The tenant's own refs in one site's cache (site) and its pulls in progress.",
        (CacheStatus, ErrorReply),
    ),
    TopicSpec(
        "fm/v1/events/fleet/{kind}",
        Event,
        "registry, scheduler, agents",
        "registry, CLI, dashboards",
        1,
        False,
        "Fleet events: node joined / stale / lost / back, desired rejected.",
    ),
    TopicSpec(
        "fm/v1/events/tenants/{tenant}/{kind}",
        Event,
        "scheduler, agents",
        "registry, that tenant",
        1,
        False,
        "A tenant's events: app deployed / updated / deleted, placement failed, "
        "workload replaced, migrations.",
    ),
    TopicSpec(
        "fm/v1/data/{tenant}/{app}/{stream}",
        None,
        "sensors, apps",
        "apps, actuators",
        1,
        False,
        "The apps' own data plane; payloads are the app's own.",
        payload="the app's own bytes",
    ),
    TopicSpec(
        "fm/v1/devices/{tenant}/{app}/{node}/{device}",
        None,
        "node agent (its shared reader)",
        "that tenant's workloads of the app (on that node)",
        0,
        False,
        "One line read from a streamed device (docs/devices.md), for each app on the node "
        "holding it; a node publishes only under its own name, a tenant reads only its own.",
        payload="the line as read, without its newline",
    ),
    TopicSpec(
        "fm/v1/reply/{account}/{client}",
        None,
        "any service answering a request",
        "the requester",
        1,
        False,
        "Replies: the request's reply model, or `ErrorReply`. `{account}` is the tenant of an"
        " `api` request, else the requester's broker account; a service answers only there.",
        payload="the request's reply model",
    ),
    TopicSpec(
        "fm/v1/ops/{duty}/reply/{client}",
        None,
        "the service answering a request",
        "the requester (a service whose bus names that duty)",
        1,
        False,
        "Replies to a service that serves a duty (a site cache, `cache-{site}`): the request's"
        " reply model, or `ErrorReply`. WAN links carry it only where that duty's requests go,"
        " so a site's pulls from the cloud cross no other site's link; services only.",
        payload="the request's reply model",
    ),
    TopicSpec(
        "fm/v1/mesh/{broker}/links/{link}",
        LinkStatus,
        "bridge link",
        "operators",
        1,
        True,
        "A bridge link's state and queue depth.",
    ),
    TopicSpec(
        "fm/v1/mesh/sessions/claim",
        SessionClaim,
        "embedded broker (a persistent session subscribed there)",
        "the other embedded brokers (over links)",
        1,
        False,
        "A client's persistent session is at this broker now: one holding its disconnected"
        " session hands on what it queued for the claimed filters (docs/reliability.md).",
    ),
    TopicSpec(
        "fm/v1/mesh/sessions/handoff/{broker}",
        HandedOnMessage,
        "embedded broker that held the old session",
        "the claiming broker",
        1,
        False,
        "One queued or in-flight message of a claimed session, in order.",
    ),
    TopicSpec(
        "fm/v1/audit/{account}",
        AuditRecord,
        "every service's request router",
        "operators",
        1,
        False,
        "Who asked what of the service with `account` and the outcome (ok or the error code).",
    ),
    TopicSpec(
        "fm/v1/leases/{duty}",
        LeaseRecord,
        "holder of the duty",
        "its standbys",
        1,
        True,
        "Who holds a single-writer duty (the scheduler's, the migrator's) until when.",
    ),
    TopicSpec(
        "fm/v1/store/scheduler/{tenant}/{app}",
        StoredApp,
        "the leading scheduler",
        "every scheduler instance",
        1,
        True,
        "An app with its placements as the scheduler last wrote it, or its tombstone (`app`"
        " null); the newest `(term, seq)` wins, so a standby takes over with every app.",
    ),
    TopicSpec(
        "fm/v1/accounts/{username}",
        AccountRecord,
        "operators (`fogmesh account`, `tenant`, `node`), the broker redeeming a join token",
        "brokers",
        1,
        True,
        "A broker account made at runtime, or its tombstone (`revoked`); it overrides the mesh"
        " file's account of that name on every broker the record reaches.",
    ),
    TopicSpec(
        "fm/v1/tenants/{tenant}",
        TenantRecord,
        "operators (`fogmesh tenant`)",
        "brokers",
        1,
        True,
        "A tenant made or deleted at runtime; a deleted tenant's accounts are refused.",
    ),
    TopicSpec(
        "fm/v1/join/{bootstrap}",
        JoinRequest,
        "an agent holding a join token (account `join-{id}`)",
        "the broker it is connected to",
        1,
        False,
        "Redeem a single-use join token for the node's own credential.",
        reply=(JoinReply, ErrorReply),
    ),
)
