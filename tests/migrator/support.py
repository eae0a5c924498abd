"""A fleet for the migrator tests: Mosquitto, the scheduler and the migrator in this process,
node agents (native runtime) as child processes, and a client bus that records events."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fogmesh.bus import Bus, MessageContext
from fogmesh.migrator import MigratorConfig, MigratorService
from fogmesh.protocol import topics
from fogmesh.protocol.apps import APPS_RESOURCE, AppAction, AppReply, DeployApp
from fogmesh.protocol.envelope import Request
from fogmesh.protocol.events import Event, EventKind
from fogmesh.protocol.manifest import AppManifest
from fogmesh.protocol.migration import MIGRATIONS_RESOURCE, MigrationReply
from fogmesh.protocol.node import Heartbeat
from fogmesh.scheduler import SchedulerService
from tests.agent.support import AgentProc, remove_native, wait_for
from tests.scheduler.harness import running, scheduler_config
from tests.support.brokers import BrokerProcess
from tests.support.buses import bus_config

__all__ = ["TENANT", "Stack", "stack", "state_file"]

TENANT = "acme"
# Writes a mark and 1 MiB of noise (four chunks) into its state dir once (a restored copy keeps
# both), then sleeps.
SCRIPT = (
    'S="$FOGMESH_STATE_DIR"; mkdir -p "$S"; if [ ! -f "$S/mark" ]; then '
    'head -c 1048576 /dev/urandom > "$S/blob"; echo "mark-$$-$(date +%s%N)" > "$S/mark"; fi; '
    "trap 'exit 0' TERM; while true; do sleep 0.2; done"
)


def state_file(agent: AgentProc, name: str = "mark") -> Path | None:
    """The workload state file ``name`` under an agent's native state dir, if there is one."""
    found = sorted((agent.state_dir / "native").rglob(f"work/state/{name}"))
    return found[0] if found else None


@dataclass
class Stack:
    """The parts of one test's fleet."""

    broker: BrokerProcess
    bus: Bus
    scheduler: SchedulerService
    migrator: MigratorService
    agents: dict[str, AgentProc]
    events: list[Event] = field(default_factory=list)
    beats: dict[str, Heartbeat] = field(default_factory=dict)
    gone: set[str] = field(default_factory=set)
    """Nodes a test killed: their last heartbeat still shows what ran before the kill."""

    def kinds(self, kind: EventKind) -> list[Event]:
        """The events of one kind seen so far."""
        return [e for e in self.events if e.kind is kind]

    def runs(self, node: str, workload: str) -> bool:
        """Whether ``node``'s latest heartbeat shows the workload running."""
        beat = self.beats.get(node)
        return beat is not None and any(
            w.name == workload and w.phase.value == "running" for w in beat.workloads or ()
        )

    def where(self, workload: str) -> list[str]:
        """Live nodes whose heartbeat shows the workload running (a killed node's last
        heartbeat is history: its processes are gone)."""
        return sorted(n for n in self.beats if n not in self.gone and self.runs(n, workload))

    async def deploy(
        self, app: str, /, manifest: dict[str, Any] | None = None, **component: Any
    ) -> AppReply:
        """Deploy a one-component native app running :data:`SCRIPT` (``component`` overrides
        the component's fields, its ``name`` too; ``manifest`` adds the app's own fields)."""
        comp = {
            "name": "worker", "runtime": "native", "executable": "/bin/sh",
            "command": ["-c", SCRIPT], "requests": {"cpu": "50m", "memory": "16Mi"},
            **component,
        }  # fmt: skip
        whole = AppManifest.model_validate({"name": app, **(manifest or {}), "components": [comp]})
        topic = topics.api(TENANT, APPS_RESOURCE, AppAction.DEPLOY)
        return await self.bus.request(topic, DeployApp(manifest=whole), AppReply, timeout=30)

    async def ask(self, action: str, request: Request) -> MigrationReply:
        """A request to the migrator's API for the tenant."""
        topic = topics.api(TENANT, MIGRATIONS_RESOURCE, action)
        sent = request.model_copy(update={"tenant": TENANT})
        return await self.bus.request(topic, sent, MigrationReply, timeout=180)


@contextlib.asynccontextmanager
async def stack(
    tmp_path: Path,
    run_label: str,
    nodes: list[str],
    *,
    runtimes: str = "native",
    agent_args: dict[str, list[str]] | None = None,
    **migrator: Any,
) -> AsyncIterator[Stack]:
    """Mosquitto, the scheduler and the migrator, and one agent per node (all stopped after)
    with ``runtimes`` (the agents' ``--runtimes``) and a node's own ``agent_args``."""
    broker = BrokerProcess("mosquitto", tmp_path / "broker").start()
    agents = {
        n: AgentProc(
            n,
            broker.port,
            tmp_path / n,
            run_label,
            extra=["--runtimes", runtimes, *(agent_args or {}).get(n, [])],
        )
        for n in nodes
    }
    sched = SchedulerService(scheduler_config(broker.port, tmp_path / "sched"))
    settings: dict[str, Any] = {
        "broker": {"port": broker.port, "username": "migrator"},
        "client_id": "migrator",
        "lease_ttl_s": 3.0,
        "lease_settle_s": 0.2,
        "tick_s": 0.2,
        "request_timeout_s": 15.0,
        # a loaded test machine is not an overload unless a test says so
        "overload_cpu_percent": 100.0,
        "overload_memory_percent": 100.0,
        **migrator,
    }
    mig = MigratorService(MigratorConfig.model_validate(settings))
    try:
        for agent in agents.values():
            agent.start()
        async with (
            running(sched),
            running(mig),
            Bus(bus_config(broker, clean_session=True)) as bus,
        ):
            st = Stack(broker, bus, sched, mig, agents)

            async def on_event(event: Event, ctx: MessageContext) -> None:
                st.events.append(event)

            async def on_beat(beat: Heartbeat, ctx: MessageContext) -> None:
                if beat.workloads is not None:  # absent: unchanged since the last that had them
                    st.beats[beat.node] = beat

            bus.subscribe(topics.tenant_event_filter(TENANT), Event, on_event)
            bus.subscribe(topics.node_filter("heartbeat"), Heartbeat, on_beat)
            await bus.wait_connected(timeout=20)
            await wait_for(sched.ready.is_set, 60, "the scheduler leads")
            await wait_for(mig.ready.is_set, 60, "the migrator leads")
            await wait_for(
                lambda: all(
                    n in sched.tracker.nodes and sched.tracker.nodes[n].facts is not None
                    for n in nodes
                ) and all(n in mig.fleet.live() for n in nodes),
                60, "the scheduler and the migrator see every node",
            )  # fmt: skip
            yield st
    except BaseException:
        _print_agent_logs(agents.values())
        raise
    finally:
        for agent in agents.values():
            agent.kill()
        await remove_native(agents.values())
        broker.stop()


def _print_agent_logs(agents: Iterable[AgentProc], lines: int = 120) -> None:
    """Each agent's last ``lines`` log lines above debug, on stderr (pytest shows them with a
    failure): the agents are child processes, so their side of a failed move is only there."""
    for agent in agents:
        kept = [line for line in agent.log_text().splitlines() if '"level": "debug"' not in line]
        print(f"----- agent {agent.node} ({agent.log_path}) -----", file=sys.stderr)
        print("\n".join(kept[-lines:]), file=sys.stderr)
