"""The node agent's topics: a node's own channels, the commands its agent answers and the
tenant's workload requests the registry relays to them.

Rows of :data:`fogmesh.protocol.catalogue.CATALOGUE`, in its order."""

from __future__ import annotations

from fogmesh.protocol import commands, migration, node, workload
from fogmesh.protocol.catalogue_spec import TopicSpec, request_topics
from fogmesh.protocol.envelope import ErrorReply

__all__ = ["NODES"]

NODES: tuple[TopicSpec, ...] = (
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
    *request_topics(
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
    *request_topics(
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
)
