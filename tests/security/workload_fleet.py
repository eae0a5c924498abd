"""A small live fleet for the tenant-workload and fuzzing tests: Mosquitto, a registry (in
this process, on SQLite), a node agent (a child process, native runtime) and tenants' buses."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fogmesh.bus import Bus
from fogmesh.protocol import (
    ActualState,
    ListWorkloads,
    WorkloadListReply,
    WorkloadPhase,
    topics,
)
from fogmesh.registry import Registry
from tests.agent.helpers import desired, native_workload
from tests.agent.support import AgentProc, Probe, mosquitto_pub, remove_native, wait_for
from tests.registry.support import run_registry
from tests.support.brokers import BrokerProcess, require_mosquitto
from tests.support.buses import bus_config, unique

__all__ = ["TICKER", "Fleet", "fleet_running"]

TICKER = """#!/bin/sh
trap 'exit 0' TERM
i=0
while true; do i=$((i+1)); echo "tick $i"; sleep 0.3; done
"""
"""A native workload that prints a numbered line three times a second."""


@dataclass
class Fleet:
    """What :func:`fleet_running` started."""

    broker: BrokerProcess
    registry: Registry
    agent: AgentProc
    node: str
    probe: Probe
    script: Path
    generation: int = 0
    workloads: list[dict[str, Any]] = field(default_factory=list)
    actuals: list[ActualState] = field(default_factory=list)

    def deploy(self, name: str, tenant: str) -> None:
        """Add a ticker workload of ``tenant`` to the node's desired state."""
        self.workloads.append(native_workload(name, tenant, str(self.script), app="app"))
        self.generation += 1
        mosquitto_pub(
            self.broker,
            topics.node(self.node, "desired"),
            desired(self.node, self.generation, *self.workloads),
        )

    def phase(self, name: str, tenant: str) -> WorkloadPhase | None:
        """The workload's phase in the agent's last actual state."""
        if not self.actuals:
            return None
        for w in self.actuals[-1].workloads:
            if w.name == name and w.tenant == tenant:
                return w.phase
        return None

    async def wait_phase(self, name: str, tenant: str, phase: WorkloadPhase) -> None:
        """Until the agent reports ``phase``."""
        await wait_for(lambda: self.phase(name, tenant) is phase, 60, f"{name} {phase}")

    async def wait_registered(self, bus: Bus, name: str, tenant: str) -> None:
        """Until the registry knows where ``tenant``'s ``name`` runs."""
        async with asyncio.timeout(60):
            while True:
                reply = await bus.request(
                    topics.api(tenant, "workloads", "list"),
                    ListWorkloads(),
                    WorkloadListReply,
                    timeout=15,
                )
                if any(w.name == name for w in reply.workloads):
                    return
                await asyncio.sleep(0.2)

    def tenant_bus(self, tenant: str) -> Bus:
        """A bus (to enter) as a client of ``tenant``."""
        return Bus(bus_config(self.broker, f"{tenant}-{unique('cli')}", username=tenant))

    @contextlib.asynccontextmanager
    async def deployed(self, tenant: str, name: str = "web") -> AsyncIterator[Bus]:
        """Deploy ``tenant``'s ``name`` and wait until it runs and the registry knows it; a
        connected bus of the tenant for the block."""
        self.deploy(name, tenant)
        await self.wait_phase(name, tenant, WorkloadPhase.RUNNING)
        async with self.tenant_bus(tenant) as bus:
            await bus.wait_connected(timeout=20)
            await self.wait_registered(bus, name, tenant)
            yield bus


@contextlib.asynccontextmanager
async def fleet_running(tmp_path: Path) -> AsyncIterator[Fleet]:
    """Mosquitto, a registry and one native agent (isolation ``agent-user``), torn down after."""
    require_mosquitto()
    broker = BrokerProcess("mosquitto", tmp_path / "broker").start()
    node = unique("n")
    script = tmp_path / "ticker.sh"
    script.write_text(TICKER)
    script.chmod(0o755)
    config = tmp_path / "agent.yaml"
    # a heartbeat every second (not only on news): the tests count them as reconcile passes
    config.write_text(
        "runtimes: [native]\nnative_isolation: agent-user\nheartbeat_max_interval_s: 1\n"
    )
    agent = AgentProc(
        node, broker.port, tmp_path / "state", f"fmtest={node}", extra=["--config", str(config)]
    )
    try:
        async with (
            run_registry(broker, f"sqlite:///{tmp_path}/registry.db") as registry,
            Bus(bus_config(broker, unique("probe"))) as probe_bus,
        ):
            await probe_bus.wait_connected(timeout=20)
            probe = Probe(probe_bus)
            fleet = Fleet(broker, registry, agent, node, probe, script)
            fleet.actuals = probe.watch(topics.node(node, "actual"), ActualState)
            agent.start()
            yield fleet
    finally:
        agent.kill()
        await remove_native([agent])
        broker.stop()
