"""Answers to ``fm/v1/nodes/{node}/cmd/{verb}``: logs (and its follow, see
:mod:`fogmesh.agent.log_follow`), upload, download, stop, start, restart, report, and the
migrator's resource-request, freeze, state-chunk, state-put and thaw (docs/migrator.md).

A tenant's ``stop`` is kept (``Reconciler.stopped``, persisted) so the reconciler leaves the
workload stopped, across agent restarts too, until ``start``; ``restart`` of a stopped
workload starts it and ends the stop.

Authorisation: every command names the tenant it acts for (``tenant`` in the envelope). A
command may touch a workload only when that tenant owns it, else ``unauthorised``. A command
that names no tenant acts as the node's operator (any workload, ``report`` lists all) only when
the agent's config sets ``allow_operator_commands``; otherwise it is refused ``unauthorised``.
The agent trusts the ``tenant`` field as far as the broker's ACLs let a client publish here:
authentication is the broker's job. An unknown workload is ``not_found``; a runtime failure is
``unavailable``; a bad path or a bad base64 body is ``invalid_request``.

This module is the router: the verbs' table and the handler that serves it. The handlers are
in :mod:`fogmesh.agent.commands_workload` (the verbs on one workload, and ``report``) and
:mod:`fogmesh.agent.commands_migration` (the migrator's verbs); the authorisation is in
:mod:`fogmesh.agent.commands_access`.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from typing import Any

from fogmesh.agent.commands_migration import MigrationVerbs
from fogmesh.agent.commands_workload import WorkloadVerbs
from fogmesh.agent.log_follow import LogFollows
from fogmesh.agent.reconcile import Reconciler
from fogmesh.bus import Action, Bus, RequestRouter
from fogmesh.protocol import (
    DownloadCommand,
    LogsCommand,
    NodeFacts,
    ReportCommand,
    RestartCommand,
    StartCommand,
    StopCommand,
    UploadCommand,
    Usage,
    topics,
)
from fogmesh.protocol.commands import MAX_UPLOAD_BYTES, NodeVerb

__all__ = ["VERBS", "CommandHandler"]

VERBS = tuple(NodeVerb)  # named once, in the protocol
# An upload carries its file in base64 (4/3 of its size) beside a small envelope; the largest
# body, larger than a state chunk's (tests/agent/test_units.py checks it), so the limit is set
# without the migration contract, which the migration verbs import when first asked
# (docs/agent.md, "Memory").
MAX_COMMAND_PAYLOAD = MAX_UPLOAD_BYTES * 4 // 3 + 64 * 1024


def _migration_model(name: str) -> Callable[[], Any]:
    """A migration verb's request model, looked up (and ``fogmesh.protocol.migration``
    imported) by the verb's first request."""
    return lambda: getattr(import_module("fogmesh.protocol.migration"), name)


class CommandHandler(WorkloadVerbs, MigrationVerbs):
    """Subscribes to this node's command topics and answers each with its typed reply."""

    def __init__(
        self,
        node: str,
        reconciler: Reconciler,
        *,
        facts: Callable[[], NodeFacts],
        usage: Callable[[], Usage],
        allow_operator: bool,
        stop_timeout: float,
    ) -> None:
        self.node = node
        self.reconciler = reconciler
        self._facts = facts
        self._usage = usage
        self.allow_operator = allow_operator
        self.stop_timeout = stop_timeout
        self.follows = LogFollows()
        self.router = RequestRouter(
            topics.node_cmd_filter(node),
            {
                NodeVerb.LOGS: Action(LogsCommand, self.on_logs),
                NodeVerb.UPLOAD: Action(UploadCommand, self.on_upload),
                NodeVerb.RESTART: Action(RestartCommand, self.on_restart),
                NodeVerb.STOP: Action(StopCommand, self.on_stop),
                NodeVerb.START: Action(StartCommand, self.on_start),
                NodeVerb.DOWNLOAD: Action(DownloadCommand, self.on_download),
                NodeVerb.REPORT: Action(ReportCommand, self.on_report),
                NodeVerb.RESOURCE_REQUEST: Action(
                    _migration_model("ResourceRequest"), self.on_resource_request
                ),
                NodeVerb.FREEZE: Action(_migration_model("FreezeCommand"), self.on_freeze),
                NodeVerb.STATE_CHUNK: Action(
                    _migration_model("StateChunkCommand"), self.on_state_chunk
                ),
                NodeVerb.STATE_PUT: Action(_migration_model("StatePutCommand"), self.on_state_put),
                NodeVerb.THAW: Action(_migration_model("ThawCommand"), self.on_thaw),
                NodeVerb.STATE_RECEIVE: Action(
                    _migration_model("StateReceiveCommand"), self.on_state_receive
                ),
                NodeVerb.STATE_SEND: Action(
                    _migration_model("StateSendCommand"), self.on_state_send, background=True
                ),
                NodeVerb.STATE_DROP: Action(
                    _migration_model("StateDropCommand"), self.on_state_drop
                ),
            },
            what="command",
            max_payload=MAX_COMMAND_PAYLOAD,
        )

    def register(self, bus: Bus) -> None:
        """Serve the verbs on ``bus`` under ``fm/v1/nodes/{node}/cmd/+``."""
        self.router.attach(bus)
