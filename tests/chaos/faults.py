"""Faults at random times from a seeded RNG: SIGKILL and restart a site broker (and the WAN link
it runs), the cloud broker, an agent, or a workload's process (its agent restarts it).

WAN cuts are not injected here: the links run inside the site brokers' processes and the whole
fleet shares one network namespace; cutting a link means splitting the fleet over namespaces
(``tests/support/netns.py``), which this fleet does not do yet.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from collections import Counter
from dataclasses import dataclass, field

from fogmesh.cli.fleet.live import FleetView
from fogmesh.cli.fleet.plan import SITES
from tests.chaos.fleet import ChaosFleet, running_pids

__all__ = ["FAULT_KINDS", "Chaos"]

FAULT_KINDS = ("site-broker", "cloud-broker", "agent", "workload")


@dataclass
class Chaos:
    """Injects one fault after another until the time is up."""

    fleet: ChaosFleet
    view: FleetView
    rng: random.Random
    faults: Counter[str] = field(default_factory=Counter)
    journal: list[str] = field(default_factory=list)
    pause: tuple[float, float] = (4.0, 12.0)
    """Seconds between two faults (uniform)."""
    downtime: tuple[float, float] = (0.5, 3.0)
    """Seconds a killed process stays down before it is started again (uniform)."""

    async def run(self, seconds: float) -> Counter[str]:
        """Inject faults for ``seconds``; every killed process is running again at the end."""
        started = time.monotonic()
        while True:
            wait = self.rng.uniform(*self.pause)
            if time.monotonic() + wait - started > seconds:
                break
            await asyncio.sleep(wait)
            await self.inject(self.rng.choice(FAULT_KINDS), time.monotonic() - started)
        return self.faults

    async def inject(self, kind: str, at: float) -> None:
        """One fault of ``kind``."""
        if kind == "workload":
            pids = sorted(running_pids(self.view).items())
            if not pids:
                self.journal.append(f"{at:7.1f}s workload: none running, skipped")
                return
            (node, name), pid = self.rng.choice(pids)
            os.kill(pid, signal.SIGKILL)
            self.journal.append(f"{at:7.1f}s workload {name} on {node} (pid {pid}) SIGKILLed")
        else:
            if kind == "site-broker":
                process = f"broker-{self.rng.choice(SITES)}"
            elif kind == "cloud-broker":
                process = "broker-cloud"
            else:
                process = self.rng.choice(self.fleet.agents)
            down = self.rng.uniform(*self.downtime)
            await asyncio.to_thread(self.fleet.kill, process)
            await asyncio.sleep(down)
            await asyncio.to_thread(self.fleet.start, process)
            self.journal.append(f"{at:7.1f}s {process} SIGKILLed, started again after {down:.1f}s")
        self.faults[kind] += 1
