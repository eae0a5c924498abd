"""Helpers for the scheduler service tests: simulated nodes and condition waits."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

from fogmesh.bus import Bus, BusConfig, MessageContext
from fogmesh.protocol import topics
from fogmesh.protocol.events import Event
from fogmesh.protocol.manifest import AppManifest
from fogmesh.protocol.node import (
    Heartbeat,
    NodeFacts,
    NodeHello,
    NodeLiveness,
    NodeStateMessage,
    Usage,
)
from fogmesh.protocol.workload import (
    ActualState,
    DesiredState,
    WorkloadPhase,
    WorkloadSpec,
    WorkloadStatus,
)
from fogmesh.scheduler import SchedulerConfig, SchedulerService

DEADLINE = 30.0


async def wait_for(cond: Callable[[], bool], what: str, timeout: float = DEADLINE) -> None:
    """Poll ``cond`` until true; fail with ``what`` after ``timeout`` seconds."""
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.05)
    assert cond(), what


def scheduler_config(
    port: int, state_dir: Path, client_id: str = "sched", **overrides: Any
) -> SchedulerConfig:
    """Fast timings: 1 s heartbeats, offline after 3 missed; ``overrides`` replace settings."""
    settings: dict[str, Any] = {
        "port": port,
        "client_id": client_id,
        "username": client_id,
        "state_dir": state_dir,
        "lease_ttl_s": 3.0,
        "lease_settle_s": 0.2,
        "tick_s": 0.2,
        "heartbeat_interval_s": 1.0,
        "retire_timeout_s": 30.0,
    }
    return SchedulerConfig.model_validate({**settings, **overrides})


class _Service(Protocol):
    async def run(self) -> None: ...


S = TypeVar("S", bound=_Service)


@contextlib.asynccontextmanager
async def running(service: S) -> AsyncIterator[S]:
    """Run the service (the scheduler, the migrator...) in a task; cancel it and await it on
    exit."""
    task = asyncio.create_task(service.run())
    try:
        yield service
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class Fleet:
    """Simulated nodes on a test bus: hello + online state (retained), heartbeats every 0.3 s."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.alive: set[str] = set()
        self.desired: dict[str, DesiredState] = {}
        self.events: list[Event] = []
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Follow desired states and events, and start the heartbeat loop."""
        self.bus.subscribe(topics.node_filter("desired"), DesiredState, self._on_desired)
        self.bus.subscribe("fm/v1/events/tenants/+/+", Event, self._on_event)
        await self.bus.wait_connected(timeout=15)
        self._task = asyncio.create_task(self._beat())

    async def stop(self) -> None:
        """Stop the heartbeat loop."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _on_desired(self, msg: DesiredState, ctx: MessageContext) -> None:
        self.desired[msg.node] = msg

    async def _on_event(self, msg: Event, ctx: MessageContext) -> None:
        self.events.append(msg)

    async def add(self, node: str, *, cpu: int = 4, labels: dict[str, str] | None = None) -> None:
        """A node says hello and online, and starts beating."""
        facts = NodeFacts(
            device_id=node, arch="x86_64", cpu_count=cpu, memory_bytes=8 * 2**30,
            disk_bytes=2**35, runtimes=["docker", "native"], labels=labels or {},
        )  # fmt: skip
        await self.bus.publish(
            topics.node(node, "hello"), NodeHello(node=node, facts=facts), retain=True
        )
        await self.set_state(node, NodeLiveness.ONLINE)
        self.alive.add(node)

    async def report(
        self, node: str, specs: list[WorkloadSpec], phase: WorkloadPhase = WorkloadPhase.RUNNING
    ) -> None:
        """Publish the node's retained actual state: ``specs`` in ``phase``."""
        statuses = [
            WorkloadStatus(
                name=s.name, tenant=s.tenant, app=s.app, component=s.component,
                runtime=s.runtime, phase=phase, spec_hash=s.spec_hash(),
            )
            for s in specs
        ]  # fmt: skip
        gen = self.desired[node].generation if node in self.desired else -1
        actual = ActualState(node=node, observed_generation=gen, workloads=statuses)
        await self.bus.publish(topics.node(node, "actual"), actual, retain=True)

    def specs(self, node: str) -> list[WorkloadSpec]:
        """The workload specs in the node's latest desired state."""
        state = self.desired.get(node)
        return [] if state is None else list(state.workloads)

    async def set_state(self, node: str, state: NodeLiveness) -> None:
        """Publish the node's retained state."""
        msg = NodeStateMessage(node=node, state=state)
        await self.bus.publish(topics.node(node, "state"), msg, retain=True)

    async def _beat(self) -> None:
        seq = 0
        usage = Usage(
            cpu_percent=5, memory_used_bytes=2**28, memory_total_bytes=8 * 2**30,
            disk_used_bytes=0, disk_total_bytes=2**35,
        )  # fmt: skip
        while True:
            for node in sorted(self.alive):
                hb = Heartbeat(node=node, seq=seq, interval_s=1.0, usage=usage)
                await self.bus.publish(topics.node(node, "heartbeat"), hb, qos=0)
            seq += 1
            await asyncio.sleep(0.3)

    def names(self, node: str) -> list[str]:
        """Workload names in the node's latest desired state."""
        state = self.desired.get(node)
        return [] if state is None else [w.name for w in state.workloads]

    def where(self, workload: str) -> list[str]:
        """Nodes whose desired state holds ``workload``."""
        return sorted(n for n in self.desired if workload in self.names(n))


@contextlib.asynccontextmanager
async def scheduler_env(
    port: int, state_dir: Path, nodes: dict[str, dict[str, str]], **overrides: Any
) -> AsyncIterator[tuple[SchedulerService, Fleet, Bus]]:
    """A leading scheduler (settings ``overrides``), a test client and the ``nodes`` (labels)."""
    service = SchedulerService(scheduler_config(port, state_dir, **overrides))
    async with running(service), client(port, "tester") as bus:
        fleet = Fleet(bus)
        await fleet.start()
        try:
            for node, labels in nodes.items():
                await fleet.add(node, labels=labels)
            await wait_for(service.ready.is_set, "scheduler leads")
            await wait_for(
                lambda: all(
                    n in service.tracker.nodes and service.tracker.nodes[n].facts is not None
                    for n in nodes
                ),
                "scheduler sees every node",
            )
            yield service, fleet, bus
        finally:
            await fleet.stop()


def client(port: int, client_id: str) -> Bus:
    """A test client bus (clean session)."""
    return Bus(BusConfig(port=port, client_id=client_id, username=client_id, clean_session=True))


def manifest(name: str, *components: dict[str, Any]) -> AppManifest:
    """A small docker manifest."""
    comps = [{"image": "fogmesh/sample-app:latest", **c} for c in components]
    return AppManifest.model_validate({"name": name, "components": comps})
