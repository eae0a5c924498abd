"""Every topic of the tree with its message model, direction, QoS and retain flag.

This table is the single source of ``docs/topics.md`` (see :mod:`fogmesh.protocol.docs`); a test
fails when the document is stale.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from fogmesh.protocol import (
    accounts,
    apps,
    appstore,
    artefacts,
    audit,
    cache_status,
    commands,
    events,
    lease,
    mesh,
    migration,
    node,
    workload,
)
from fogmesh.protocol.envelope import ErrorReply

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


def _requests(
    prefix: str,
    publisher: str,
    subscribers: str,
    rows: tuple[tuple[str, type[BaseModel], type[BaseModel], str], ...],
) -> tuple[TopicSpec, ...]:
    """A request topic ``prefix + action`` for each ``(action, request, answer, summary)``:
    QoS 1, not retained, answered with ``answer`` or :class:`ErrorReply`."""
    return tuple(
        TopicSpec(
            prefix + action,
            request,
            publisher,
            subscribers,
            1,
            False,
            summary,
            (answer, ErrorReply),
        )
        for action, request, answer, summary in rows
    )


CATALOGUE: tuple[TopicSpec, ...] = (
    TopicSpec(
        "fm/v1/nodes/{node}/hello",
        node.NodeHello,
        "node agent",
        "registry, scheduler",
        1,
        True,
        "The node's facts, at agent start and after every reconnect.",
    ),
    TopicSpec(
        "fm/v1/nodes/{node}/state",
        node.NodeStateMessage,
        "node agent (its last will: broker)",
        "registry, scheduler",
        1,
        True,
        "`online` at connect; the broker publishes the agent's last will `offline` the "
        "moment its session dies.",
    ),
    TopicSpec(
        "fm/v1/nodes/{node}/heartbeat",
        node.Heartbeat,
        "node agent",
        "registry, scheduler",
        0,
        False,
        "Usage and each workload's status, every few seconds.",
    ),
    TopicSpec(
        "fm/v1/nodes/{node}/trouble",
        migration.NodeTrouble,
        "node agent",
        "migrator",
        1,
        False,
        "The agent sees trouble coming (disk nearly full, a runtime failing) and asks that "
        "its workloads move; again every `trouble_repeat_s` while it lasts.",
    ),
    TopicSpec(
        "fm/v1/nodes/{node}/desired",
        workload.DesiredState,
        "scheduler (lease holder), migrator",
        "that node's agent",
        1,
        True,
        "Every workload the node should run; never written by the node.",
    ),
    TopicSpec(
        "fm/v1/nodes/{node}/actual",
        workload.ActualState,
        "that node's agent",
        "registry, scheduler",
        1,
        True,
        "What runs, with each workload's phase.",
    ),
    TopicSpec(
        "fm/v1/nodes/{node}/cmd/logs",
        commands.LogsCommand,
        "operator, CLI",
        "that node's agent",
        1,
        False,
        "The last lines of a workload's output.",
        (commands.LogsReply, ErrorReply),
    ),
    TopicSpec(
        "fm/v1/nodes/{node}/cmd/upload",
        commands.UploadCommand,
        "operator, CLI",
        "that node's agent",
        1,
        False,
        "Put a file into a workload.",
        (commands.UploadReply, ErrorReply),
    ),
    TopicSpec(
        "fm/v1/nodes/{node}/cmd/restart",
        commands.RestartCommand,
        "operator, CLI",
        "that node's agent",
        1,
        False,
        "Stop and start a workload.",
        (commands.AckReply, ErrorReply),
    ),
    *_requests(
        "fm/v1/nodes/{node}/cmd/",
        "operator, registry (for a tenant)",
        "that node's agent",
        (
            (
                "stop",
                commands.StopCommand,
                commands.AckReply,
                "Stop a workload and keep it stopped until start.",
            ),
            ("start", commands.StartCommand, commands.AckReply, "Start a workload a stop holds."),
            (
                "download",
                commands.DownloadCommand,
                commands.DownloadReply,
                "Read one file out of a workload.",
            ),
        ),
    ),
    *_requests(
        "fm/v1/api/{tenant}/workloads/",
        "users, CLI",
        "registry (relays to the workload's agent)",
        (
            (
                "logs",
                commands.LogsCommand,
                commands.LogsReply,
                "A workload's last lines; with follow_s a stream (seq, final) from its agent.",
            ),
            (
                "stop",
                commands.StopCommand,
                commands.AckReply,
                "Stop a workload of the tenant, kept stopped.",
            ),
            (
                "start",
                commands.StartCommand,
                commands.AckReply,
                "Start a workload the tenant stopped.",
            ),
            (
                "restart",
                commands.RestartCommand,
                commands.AckReply,
                "Stop and start a workload of the tenant.",
            ),
            (
                "upload",
                commands.UploadCommand,
                commands.UploadReply,
                "Put a file into a workload of the tenant.",
            ),
            (
                "download",
                commands.DownloadCommand,
                commands.DownloadReply,
                "Read a file out of one.",
            ),
        ),
    ),
    TopicSpec(
        "fm/v1/nodes/{node}/cmd/report",
        commands.ReportCommand,
        "operator, CLI",
        "that node's agent",
        1,
        False,
        "Facts, usage and workloads, now.",
        (commands.ReportReply, ErrorReply),
    ),
    *_requests(
        "fm/v1/api/{tenant}/apps/",
        "users, CLI, Node-RED",
        "scheduler (lease holder)",
        (
            (
                "deploy",
                apps.DeployApp,
                apps.AppReply,
                "Place a new app; the reply lists its placements.",
            ),
            (
                "update",
                apps.UpdateApp,
                apps.AppReply,
                "A new version: started before the old one stops.",
            ),
            ("scale", apps.ScaleApp, apps.AppReply, "Set a component's replica count."),
            ("delete", apps.DeleteApp, apps.AppDeletedReply, "Remove an app and its workloads."),
            ("list", apps.ListApps, apps.AppListReply, "The tenant's apps."),
            ("get", apps.GetApp, apps.AppReply, "One app with its manifest and placements."),
        ),
    ),
    *_requests(
        "fm/v1/nodes/{node}/cmd/",
        "migrator",
        "that node's agent",
        (
            (
                "resource-request",
                migration.ResourceRequest,
                migration.ResourceOffer,
                "Could this node take the workload: level 2 (run), 1 (store) or 0 (relay).",
            ),
            (
                "freeze",
                migration.FreezeCommand,
                migration.FrozenReply,
                "Stop and hold a workload, stage its state's snapshot.",
            ),
            (
                "state-chunk",
                migration.StateChunkCommand,
                migration.StateChunkReply,
                "One chunk of a staged snapshot, with its sha256.",
            ),
            (
                "state-put",
                migration.StatePutCommand,
                migration.StatePutReply,
                "Append one checked chunk of an expected handover (its token) to the snapshot"
                " staged here; says the next offset. Sent by the source node's agent, peer to"
                " peer (and the migrator's empty probes).",
            ),
            (
                "thaw",
                migration.ThawCommand,
                commands.AckReply,
                "Release a frozen workload (the move failed).",
            ),
            (
                "state-receive",
                migration.StateReceiveCommand,
                commands.AckReply,
                "Expect a snapshot from a source node: take only chunks with this token.",
            ),
            (
                "state-send",
                migration.StateSendCommand,
                migration.StateSendReply,
                "Push a staged snapshot to a peer's state-put, resuming at the peer's offset.",
            ),
            (
                "state-drop",
                migration.StateDropCommand,
                commands.AckReply,
                "Forget every staged snapshot of a workload (deleted, deployed anew, or moved"
                " elsewhere): it is never restored.",
            ),
        ),
    ),
    TopicSpec(
        "fm/v1/ops/scheduler/move",
        migration.MoveWorkload,
        "migrator",
        "scheduler (lease holder)",
        1,
        False,
        "Re-home one replica (dry_run: only name the node it would pick).",
        (migration.MoveReply, ErrorReply),
    ),
    TopicSpec(
        "fm/v1/ops/scheduler/holders",
        migration.ReplicaHolders,
        "migrator",
        "scheduler (lease holder)",
        1,
        False,
        "Where a workload's state replica waits: re-placed after a death, it goes there first.",
        (commands.AckReply, ErrorReply),
    ),
    *_requests(
        "fm/v1/api/{tenant}/migrations/",
        "users, CLI",
        "migrator (lease holder)",
        (
            (
                "migrate",
                migration.MigrateWorkload,
                migration.MigrationReply,
                "Move one workload, with its state.",
            ),
            (
                "drain",
                migration.DrainNode,
                migration.MigrationReply,
                "Move the tenant's workloads off a node.",
            ),
        ),
    ),
    *_requests(
        "fm/v1/api/{tenant}/artefacts/",
        "users, CLI (fogmesh push), dashboards",
        "artefact store",
        (
            (
                "push",
                artefacts.PushChunk,
                artefacts.PushStatus,
                "One chunk of an upload (no data: where it stands); resumable, checked per "
                "chunk and whole, within the tenant's quota.",
            ),
            (
                "list",
                artefacts.ListArtefacts,
                artefacts.ArtefactList,
                "The tenant's artefacts and its quota.",
            ),
            (
                "delete",
                artefacts.DeleteArtefact,
                artefacts.ArtefactList,
                "Drop the tenant's hold on an artefact.",
            ),
        ),
    ),
    TopicSpec(
        "fm/v1/ops/artefacts/stat",
        artefacts.StatArtefact,
        "site artefact caches",
        "artefact store",
        1,
        False,
        "Size and name of an artefact if the tenant holds it (else not_found).",
        (artefacts.ArtefactInfo, ErrorReply),
    ),
    TopicSpec(
        "fm/v1/ops/artefacts/read",
        artefacts.ReadChunk,
        "site artefact caches",
        "artefact store",
        1,
        False,
        "One chunk of a stored artefact.",
        (artefacts.ChunkData, ErrorReply),
    ),
    TopicSpec(
        "fm/v1/ops/cache-{site}/artefact-fetch",
        artefacts.FetchArtefact,
        "node agents",
        "the site's artefact cache",
        1,
        False,
        "A ref a workload of the tenant runs: the cache pulls it from the store once and "
        "answers a one-time download URL on the site's LAN.",
        (artefacts.FetchReady, ErrorReply),
    ),
    TopicSpec(
        "fm/v1/ops/cache-{site}/status",
        cache_status.CacheStatusRequest,
        "operators, dashboards, the artefact store (for a tenant)",
        "the site's artefact cache",
        1,
        False,
        "What the cache holds (ref, size, tenants, last use), its pulls in progress with "
        "their offset and its bytes used of max_bytes; one tenant's refs when it names one.",
        (cache_status.CacheStatus, ErrorReply),
    ),
    TopicSpec(
        "fm/v1/api/{tenant}/artefacts/cache-status",
        cache_status.CacheStatusRequest,
        "users, dashboards",
        "artefact store (asks the site's cache)",
        1,
        False,
        "The tenant's own refs in one site's cache (site) and its pulls in progress.",
        (cache_status.CacheStatus, ErrorReply),
    ),
    TopicSpec(
        "fm/v1/events/fleet/{kind}",
        events.Event,
        "registry, scheduler, agents",
        "registry, CLI, dashboards",
        1,
        False,
        "Fleet events: node joined / stale / lost / back, desired rejected.",
    ),
    TopicSpec(
        "fm/v1/events/tenants/{tenant}/{kind}",
        events.Event,
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
        mesh.LinkStatus,
        "bridge link",
        "operators",
        1,
        True,
        "A bridge link's state and queue depth.",
    ),
    TopicSpec(
        "fm/v1/mesh/sessions/claim",
        mesh.SessionClaim,
        "embedded broker (a persistent session subscribed there)",
        "the other embedded brokers (over links)",
        1,
        False,
        "A client's persistent session is at this broker now: one holding its disconnected"
        " session hands on what it queued for the claimed filters (docs/reliability.md).",
    ),
    TopicSpec(
        "fm/v1/mesh/sessions/handoff/{broker}",
        mesh.HandedOnMessage,
        "embedded broker that held the old session",
        "the claiming broker",
        1,
        False,
        "One queued or in-flight message of a claimed session, in order.",
    ),
    TopicSpec(
        "fm/v1/audit/{account}",
        audit.AuditRecord,
        "every service's request router",
        "operators",
        1,
        False,
        "Who asked what of the service with `account` and the outcome (ok or the error code).",
    ),
    TopicSpec(
        "fm/v1/leases/{duty}",
        lease.LeaseRecord,
        "holder of the duty",
        "its standbys",
        1,
        True,
        "Who holds a single-writer duty (the scheduler's, the migrator's) until when.",
    ),
    TopicSpec(
        "fm/v1/store/scheduler/{tenant}/{app}",
        appstore.StoredApp,
        "the leading scheduler",
        "every scheduler instance",
        1,
        True,
        "An app with its placements as the scheduler last wrote it, or its tombstone (`app`"
        " null); the newest `(term, seq)` wins, so a standby takes over with every app.",
    ),
    TopicSpec(
        "fm/v1/accounts/{username}",
        accounts.AccountRecord,
        "operators (`fogmesh account`, `tenant`, `node`), the broker redeeming a join token",
        "brokers",
        1,
        True,
        "A broker account made at runtime, or its tombstone (`revoked`); it overrides the mesh"
        " file's account of that name on every broker the record reaches.",
    ),
    TopicSpec(
        "fm/v1/tenants/{tenant}",
        accounts.TenantRecord,
        "operators (`fogmesh tenant`)",
        "brokers",
        1,
        True,
        "A tenant made or deleted at runtime; a deleted tenant's accounts are refused.",
    ),
    TopicSpec(
        "fm/v1/join/{bootstrap}",
        accounts.JoinRequest,
        "an agent holding a join token (account `join-{id}`)",
        "the broker it is connected to",
        1,
        False,
        "Redeem a single-use join token for the node's own credential.",
        reply=(accounts.JoinReply, ErrorReply),
    ),
)
