"""The live view of ``fogmesh up``: nodes, workloads and the sample app's data rates, read
from the bus like any other client would."""

from __future__ import annotations

import json
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from rich.console import Group
from rich.table import Table

from fogmesh.bus import Bus, MessageContext, RawMessage
from fogmesh.cli.render import human_bytes
from fogmesh.protocol import (
    ActualState,
    Heartbeat,
    NodeHello,
    NodeLiveness,
    NodeStateMessage,
    WorkloadStatus,
    topics,
)
from fogmesh.protocol.topics import NodeChannel

__all__ = ["FleetView"]


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

    def __init__(self, tenant: str, app: str) -> None:
        self.tenant, self.app = tenant, app
        self.hello: dict[str, NodeHello] = {}
        self.state: dict[str, NodeLiveness] = {}
        self.heartbeat: dict[str, Heartbeat] = {}
        self.actual: dict[str, ActualState] = {}
        self.streams: dict[str, _Stream] = {}

    def attach(self, bus: Bus) -> None:
        """Subscribe to what the view shows."""
        bus.subscribe(topics.node_filter(NodeChannel.HELLO), NodeHello, self._on_hello)
        bus.subscribe(topics.node_filter(NodeChannel.STATE), NodeStateMessage, self._on_state)
        bus.subscribe(topics.node_filter(NodeChannel.HEARTBEAT), Heartbeat, self._on_heartbeat)
        bus.subscribe(topics.node_filter(NodeChannel.ACTUAL), ActualState, self._on_actual)
        bus.subscribe(topics.data_filter(self.tenant, self.app), RawMessage, self._on_data)

    async def _on_hello(self, msg: NodeHello, ctx: MessageContext) -> None:
        self.hello[msg.node] = msg

    async def _on_state(self, msg: NodeStateMessage, ctx: MessageContext) -> None:
        self.state[msg.node] = msg.state

    async def _on_heartbeat(self, msg: Heartbeat, ctx: MessageContext) -> None:
        self.heartbeat[msg.node] = msg

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
        """Nodes whose state is online."""
        return {n for n, s in self.state.items() if s is NodeLiveness.ONLINE}

    def workloads(self) -> list[tuple[str, WorkloadStatus]]:
        """Every workload any node reports, with its node."""
        return [(node, w) for node, a in sorted(self.actual.items()) for w in a.workloads]

    def outputs(self) -> int:
        """How many messages the app has published on ``out``."""
        stream = self.streams.get("out")
        return stream.total if stream else 0

    # -- rendering ---------------------------------------------------------------------------

    def render(self) -> Group:
        """The three tables."""
        nodes = Table(title="nodes", expand=True)
        for column in ("node", "site", "state", "cpu", "memory", "workloads"):
            nodes.add_column(column)
        for node in sorted(set(self.hello) | set(self.state)):
            hello, beat = self.hello.get(node), self.heartbeat.get(node)
            state = self.state.get(node)
            colour = "green" if state is NodeLiveness.ONLINE else "red"
            nodes.add_row(
                node,
                hello.facts.site if hello else "-",
                f"[{colour}]{state.value if state else '?'}[/]",
                f"{beat.usage.cpu_percent:.0f}%" if beat else "-",
                human_bytes(beat.usage.memory_used_bytes) if beat else "-",
                str(len(self.actual[node].workloads)) if node in self.actual else "0",
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
        return Group(nodes, loads, data)
