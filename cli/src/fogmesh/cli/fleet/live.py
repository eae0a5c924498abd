"""The live view of ``fogmesh up``: nodes, workloads and the sample app's data rates, read
from the bus like any other client would, and what just happened (nodes lost and back,
workloads re-placed or migrated, nodes killed and revived by the user)."""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from rich.console import Group
from rich.table import Table

from fogmesh.bus import Bus, MessageContext, RawMessage
from fogmesh.cli.render import human_bytes
from fogmesh.protocol import (
    ActualState,
    Event,
    EventKind,
    Heartbeat,
    NodeHello,
    NodeLiveness,
    NodeStateMessage,
    WorkloadStatus,
    topics,
)
from fogmesh.protocol.events import MigrationData, NodeEventData, ReplacedData
from fogmesh.protocol.topics import NodeChannel

__all__ = ["FLEET_KINDS", "TENANT_KINDS", "FleetView", "describe_event"]

FLEET_KINDS = (
    EventKind.NODE_LOST,
    EventKind.NODE_STALE,
    EventKind.NODE_BACK,
    EventKind.SITE_UNREACHABLE,
    EventKind.SITE_REACHABLE,
)
"""Fleet events the view shows: a node's liveness changing, a site cut off or back."""
TENANT_KINDS = (
    EventKind.REPLACED,
    EventKind.PLACEMENT_FAILED,
    EventKind.MIGRATION_STARTED,
    EventKind.MIGRATION_FINISHED,
    EventKind.MIGRATION_FAILED,
)
"""The tenant's events the view shows: its workloads moving."""


def _arrow(source: str | None, target: str | None) -> str:
    if target is None:  # a move that has not chosen its peer (started, or failed to find one)
        return f"off {source or '?'}"
    return f"{source or '?'} -> {target}"


def describe_event(event: Event) -> str:
    """One line for an event the view shows (its message when its data does not validate)."""
    who = event.workload or event.node or ""
    try:
        data = event.payload()
    except ValidationError:
        return f"{event.kind.value} {who}: {event.message}".strip()
    if isinstance(data, NodeEventData):
        why = data.reason or data.via or ""
        return f"{event.kind.value} {who}" + (f" ({why})" if why else "")
    if isinstance(data, ReplacedData):
        if data.from_ or data.to:
            return f"{event.kind.value} {who}: {_arrow(data.from_, data.to)}"
        return f"{event.kind.value} {who}: new spec in place"
    if isinstance(data, MigrationData):
        line = f"{event.kind.value} {who}: {_arrow(data.from_, data.to)} ({data.trigger}"
        if data.freeze_s is not None:
            line += f", frozen {data.freeze_s:.2f} s"
        if data.replica_age_s is not None:
            line += f", replica {data.replica_age_s:.1f} s old"
        if data.reasons:
            line += ", " + "; ".join(f"{k}: {v}" for k, v in sorted(data.reasons.items())[:3])
        return line + ")"
    return f"{event.kind.value} {who}: {event.message}".strip()


@dataclass
class _Stream:
    times: deque[float] = field(default_factory=lambda: deque(maxlen=5000))
    total: int = 0
    last: dict[str, Any] = field(default_factory=dict)

    def rate(self, window: float = 5.0) -> float:
        now = time.time()
        return sum(1 for t in self.times if now - t <= window) / window


class FleetView:
    """What the fleet looks like from the cloud broker."""

    def __init__(self, tenant: str, app: str, on_note: Callable[[str], None] | None = None) -> None:
        self.tenant, self.app = tenant, app
        self.hello: dict[str, NodeHello] = {}
        self.state: dict[str, NodeLiveness] = {}
        self.heartbeat: dict[str, Heartbeat] = {}
        self.actual: dict[str, ActualState] = {}
        self.streams: dict[str, _Stream] = {}
        self.lost: dict[str, str] = {}
        """Nodes the registry judged lost, with how (a silent death leaves them "online")."""
        self.agents: dict[str, str] = {}
        """What each node's agent process is doing (the fleet's supervisor fills it)."""
        self.notes: deque[tuple[float, str]] = deque(maxlen=12)
        self.hint = ""
        """A line under the events table (the keys the live view reads, if any)."""
        self._on_note = on_note

    def attach(self, bus: Bus) -> None:
        """Subscribe to what the view shows."""
        bus.subscribe(topics.node_filter(NodeChannel.HELLO), NodeHello, self._on_hello)
        bus.subscribe(topics.node_filter(NodeChannel.STATE), NodeStateMessage, self._on_state)
        bus.subscribe(topics.node_filter(NodeChannel.HEARTBEAT), Heartbeat, self._on_heartbeat)
        bus.subscribe(topics.node_filter(NodeChannel.ACTUAL), ActualState, self._on_actual)
        bus.subscribe(topics.data_filter(self.tenant, self.app), RawMessage, self._on_data)
        for kind in FLEET_KINDS:
            bus.subscribe(topics.fleet_event(kind), Event, self._on_event)
        for kind in TENANT_KINDS:
            bus.subscribe(topics.tenant_event(self.tenant, kind), Event, self._on_event)

    def note(self, text: str) -> None:
        """Record something that just happened (shown in the events table)."""
        self.notes.append((time.time(), text))
        if self._on_note is not None:
            self._on_note(text)

    async def _on_event(self, msg: Event, ctx: MessageContext) -> None:
        if msg.node is not None and msg.kind is EventKind.NODE_LOST:
            self.lost[msg.node] = str(msg.data.get("reason") or "lost")
        elif msg.node is not None and msg.kind is EventKind.NODE_BACK:
            self.lost.pop(msg.node, None)
        self.note(describe_event(msg))

    async def _on_hello(self, msg: NodeHello, ctx: MessageContext) -> None:
        self.hello[msg.node] = msg

    async def _on_state(self, msg: NodeStateMessage, ctx: MessageContext) -> None:
        self.state[msg.node] = msg.state
        if msg.state is NodeLiveness.ONLINE:
            self.lost.pop(msg.node, None)

    async def _on_heartbeat(self, msg: Heartbeat, ctx: MessageContext) -> None:
        self.heartbeat[msg.node] = msg
        self.lost.pop(msg.node, None)  # it beats: back, even if its node-back went unseen

    async def _on_actual(self, msg: ActualState, ctx: MessageContext) -> None:
        self.actual[msg.node] = msg

    async def _on_data(self, msg: RawMessage, ctx: MessageContext) -> None:
        stream = ctx.ref.stream if ctx.ref and ctx.ref.stream else ctx.topic
        entry = self.streams.setdefault(stream, _Stream())
        entry.times.append(time.time())
        entry.total += 1
        try:
            data = json.loads(msg.payload)
        except ValueError:
            data = {}
        entry.last = data if isinstance(data, dict) else {}

    # -- questions ---------------------------------------------------------------------------

    def online(self) -> set[str]:
        """Nodes whose state is online and that the registry has not judged lost."""
        return {n for n, s in self.state.items() if s is NodeLiveness.ONLINE and n not in self.lost}

    def workloads(self) -> list[tuple[str, WorkloadStatus]]:
        """Every workload a node that is not offline reports, with its node (a lost node's
        last report is not what runs: its workloads are being re-placed)."""
        return [
            (node, w)
            for node, a in sorted(self.actual.items())
            if self.state.get(node) is not NodeLiveness.OFFLINE and node not in self.lost
            for w in a.workloads
        ]

    def outputs(self) -> int:
        """How many messages the app has published on ``out``."""
        stream = self.streams.get("out")
        return stream.total if stream else 0

    # -- rendering ---------------------------------------------------------------------------

    def render(self) -> Group:
        """The four tables: nodes, workloads, data plane, events."""
        nodes = Table(title="nodes", expand=True)
        for column in ("node", "site", "state", "agent", "cpu", "memory", "workloads"):
            nodes.add_column(column)
        for node in sorted(set(self.hello) | set(self.state)):
            hello, beat = self.hello.get(node), self.heartbeat.get(node)
            state = self.state.get(node)
            shown = state.value if state else "?"
            if node in self.lost:
                shown = f"lost ({self.lost[node]})"
            colour = "green" if node in self.online() else "red"
            nodes.add_row(
                node,
                hello.facts.site if hello else "-",
                f"[{colour}]{shown}[/]",
                self.agents.get(node, "-"),
                f"{beat.usage.cpu_percent:.0f}%" if beat else "-",
                human_bytes(beat.usage.memory_used_bytes) if beat else "-",
                str(sum(1 for n, _ in self.workloads() if n == node)),
            )
        loads = Table(title="workloads", expand=True)
        for column in ("workload", "node", "runtime", "phase", "restarts", "reason"):
            loads.add_column(column)
        for node, w in self.workloads():
            colour = "green" if w.phase.value == "running" else "yellow"
            loads.add_row(
                w.name,
                node,
                w.runtime.value,
                f"[{colour}]{w.phase.value}[/]",
                str(w.restarts),
                w.reason[:50] or "-",
            )
        data = Table(title=f"data plane: fm/v1/data/{self.tenant}/{self.app}/...", expand=True)
        for column in ("stream", "msg/s", "total", "last"):
            data.add_column(column)
        for name, stream in sorted(self.streams.items()):
            last = stream.last
            summary = f"seq {last.get('seq', '?')}"
            if "compute_ms" in last:
                summary += f", compute {float(last['compute_ms']):.2f} ms"
            if "ts_in" in last and "ts_out" in last:
                latency = (float(last["ts_out"]) - float(last["ts_in"])) * 1000
                summary += f", sensor->out {latency:.1f} ms"
            data.add_row(name, f"{stream.rate():.1f}", str(stream.total), summary)
        happened = Table(
            title="events (fogmesh fleet kill / revive NODE to watch a failover)",
            caption=self.hint or None,
            expand=True,
        )
        happened.add_column("time")
        happened.add_column("what")
        for at, text in self.notes:
            happened.add_row(time.strftime("%H:%M:%S", time.localtime(at)), text)
        return Group(nodes, loads, data, happened)
