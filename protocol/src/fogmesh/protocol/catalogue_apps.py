"""Apps and moving their workloads: the tenant's app requests the scheduler answers, the
migrator's verbs on a node, its requests to the scheduler and the tenant's migration requests.

Rows of :data:`fogmesh.protocol.catalogue.CATALOGUE`, in its order."""

from __future__ import annotations

from fogmesh.protocol import apps, commands, migration
from fogmesh.protocol.catalogue_spec import TopicSpec, request_topics
from fogmesh.protocol.envelope import ErrorReply

__all__ = ["APPS"]

APPS: tuple[TopicSpec, ...] = (
    *request_topics(
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
    *request_topics(
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
    *request_topics(
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
)
