"""Faults at random times from a seeded RNG: SIGKILL and restart a site broker (and the WAN link
it runs), the cloud broker, an agent, or a workload's process (its agent restarts it); and cut
the cut site's WAN link silently and heal it later (:mod:`tests.chaos.wan`).

A cut lasts either a few seconds (shorter than the link's keepalive and the registry's node
liveness, 6 s) or well beyond both (the link gives up and reconnects, the cloud broker drops the
silent session, the site's nodes go offline and the scheduler may move their workloads). Other
faults go on during a cut; there is one cut at a time, and the first fault of a run is a long cut
so that even a short run has one.
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
from tests.chaos.wan import CUT_SITE

__all__ = ["FAULT_KINDS", "Chaos"]

FAULT_KINDS = ("site-broker", "cloud-broker", "agent", "workload", "wan-cut")

SHORT_CUT = (1.0, 4.0)
"""Seconds a short cut lasts (uniform): below the link's keepalive and the node liveness."""
LONG_CUT = (10.0, 30.0)
"""Seconds a long cut lasts (uniform): the link, the cloud and the registry all notice."""


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
    cuts: Counter[str] = field(default_factory=Counter)
    """WAN cuts by length (``short``, ``long``)."""
    _healing: asyncio.Task[None] | None = None

    @property
    def kinds(self) -> tuple[str, ...]:
        """The fault kinds this fleet can take (no WAN cut without namespaces)."""
        return FAULT_KINDS if self.fleet.wan is not None else FAULT_KINDS[:-1]

    async def run(self, seconds: float) -> Counter[str]:
        """Inject faults for ``seconds``; every killed process is running again at the end."""
        started = time.monotonic()
        while True:
            wait = self.rng.uniform(*self.pause)
            if time.monotonic() + wait - started > seconds:
                break
            await asyncio.sleep(wait)
            kind = self.rng.choice(self.kinds)
            if self.fleet.wan is not None and not self.faults["wan-cut"]:
                kind = "wan-cut"
            await self.inject(kind, time.monotonic() - started)
        if self._healing is not None:
            await self._healing
        return self.faults

    async def inject(self, kind: str, at: float) -> None:
        """One fault of ``kind``."""
        if kind == "wan-cut":
            if self._healing is not None and not self._healing.done():
                self.journal.append(f"{at:7.1f}s wan-cut: the link is already cut, skipped")
                return
            long = not self.faults["wan-cut"] or self.rng.random() < 0.5
            seconds = self.rng.uniform(*(LONG_CUT if long else SHORT_CUT))
            self._healing = asyncio.create_task(self._cut(seconds, at))
            self.cuts["long" if long else "short"] += 1
        elif kind == "workload":
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

    async def _cut(self, seconds: float, at: float) -> None:
        wan = self.fleet.wan
        assert wan is not None
        how = await asyncio.to_thread(wan.cut)
        self.journal.append(f"{at:7.1f}s WAN link of {CUT_SITE} cut for {seconds:.1f}s ({how})")
        try:
            await asyncio.sleep(seconds)
        finally:
            await asyncio.to_thread(wan.heal)
            self.journal.append(f"{at + seconds:7.1f}s WAN link of {CUT_SITE} healed")
