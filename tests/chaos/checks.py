"""What must hold once the faults stop: every node online in the registry, the app's workloads
running, and the registry's workloads the ones the agents run."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from fogmesh.bus import Bus
from fogmesh.cli.fleet.live import FleetView
from fogmesh.protocol import RemoteError, RequestTimeout
from tests.chaos.fleet import ChaosFleet, running_pids

__all__ = ["APP_WORKLOADS", "eventually", "unsettled"]

APP_WORKLOADS = 2
"""The sample app's sensor and its one convolver."""


async def unsettled(fleet: ChaosFleet, bus: Bus, view: FleetView) -> str | None:
    """Why the fleet is not (yet) whole, or None when it is."""
    if dead := fleet.dead():
        return f"processes exited: {dead}"
    try:
        nodes = await fleet.registry_nodes(bus)
        listed = await fleet.registry_workloads(bus)
    except (RemoteError, RequestTimeout) as exc:
        return f"the registry did not answer: {exc}"
    states = {n.node: n.state for n in nodes}
    expected = {n.node for n in fleet.plan.nodes}
    if any(states.get(node) != "online" for node in expected):
        return f"nodes in the registry: {states}"
    running = running_pids(view)
    if len(running) != APP_WORKLOADS:
        return f"the agents run {sorted(running)}, not {APP_WORKLOADS} live workloads"
    registered = {(w.node, w.name) for w in listed if w.phase.value != "removed"}
    if registered != set(running):
        phases = sorted((w.node, w.name, w.phase.value) for w in listed)
        return f"the registry lists {phases}; the agents run {sorted(running)}"
    return None


async def eventually(check: Callable[[], Awaitable[str | None]], timeout: float, what: str) -> None:
    """Poll ``check`` (which says what is still wrong, or None) until it passes; fail after a
    generous ``timeout`` with its last answer."""
    deadline = time.monotonic() + timeout
    while (why := await check()) is not None:
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: still after {timeout:.0f}s: {why}")
        await asyncio.sleep(2.0)
