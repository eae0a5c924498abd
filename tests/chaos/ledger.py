"""What the sensor was told arrived, and what reached ``out``.

A reading is known by ``(seq, ts)``: ``seq`` starts again at 0 when the sensor process is
restarted, ``ts`` (its send time, carried as ``ts_in`` on ``out``) tells those apart. The sensor
logs ``acknowledged seq N ts T`` for every PUBACK from its broker (``fogmesh_sample.sensor``);
the :class:`OutRecorder` is a persistent-session QoS 1 subscriber of ``out`` on the cloud broker.

Readings sent before the pipeline was whole (before the reading of the first output) are not
counted: MQTT drops a message nobody has subscribed to yet, and at start-up the sensor may publish
before the convolver's subscription exists.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from fogmesh.bus import Bus, MessageContext, RawMessage
from fogmesh.cli.fleet.plan import APP, TENANT
from fogmesh.protocol import topics

__all__ = ["Ledger", "OutRecorder", "Reading", "acknowledged", "watch_acknowledged"]

Reading = tuple[int, float]
"""``(seq, ts)``."""

_ACK = re.compile(r"acknowledged seq (\d+) ts ([0-9.e+-]+)")


def acknowledged(agents_dir: Path, since: float = 0.0) -> set[Reading]:
    """Every reading sent at ``since`` or later (unix time) that a sensor on any node logged as
    acknowledged (current and rotated logs)."""
    found: set[Reading] = set()
    for log in agents_dir.glob("**/logs/app.log*"):
        try:
            text = log.read_text(errors="replace")
        except OSError:  # rotated away meanwhile: its lines are in the next file
            continue
        for match in _ACK.finditer(text):
            found.add((int(match.group(1)), float(match.group(2))))
    return {r for r in found if r[1] >= since}


async def watch_acknowledged(agents_dir: Path, into: set[Reading], every: float = 1.0) -> None:
    """Add what :func:`acknowledged` finds to ``into`` every ``every`` seconds, until cancelled:
    an agent deletes a workload's directory, logs included, when the workload moves away."""
    while True:
        into |= await asyncio.to_thread(acknowledged, agents_dir)
        await asyncio.sleep(every)


@dataclass
class OutRecorder:
    """Records every message on ``out`` with the time it arrived."""

    arrivals: list[float] = field(default_factory=list)
    readings: Counter[Reading] = field(default_factory=Counter)
    malformed: int = 0
    first: Reading | None = None
    """The reading of the first output: from then on the pipeline was whole."""

    def attach(self, bus: Bus) -> None:
        """Subscribe (QoS 1) on the bus, whose session should be persistent."""
        bus.subscribe(topics.data(TENANT, APP, "out"), RawMessage, self._on_out)

    async def _on_out(self, msg: RawMessage, ctx: MessageContext) -> None:
        try:
            data = json.loads(msg.payload)
            reading = (int(data["seq"]), float(data["ts_in"]))
        except (ValueError, KeyError, TypeError):
            self.malformed += 1
            return
        self.arrivals.append(time.monotonic())
        if self.first is None:
            self.first = reading
        self.readings[reading] += 1

    def dump(self, path: Path) -> None:
        """Every output reading with its count, for reading a failure afterwards."""
        lines = (json.dumps([seq, ts, n]) for (seq, ts), n in sorted(self.readings.items()))
        path.write_text("\n".join(lines) + "\n")

    @property
    def whole_since(self) -> float:
        """The send time of the first output's reading (unix time; infinity before any)."""
        return self.first[1] if self.first else float("inf")

    def max_gap(self, since: float, until: float) -> float:
        """The longest time without an output between ``since`` and ``until`` (monotonic)."""
        times = [since, *(t for t in self.arrivals if since <= t <= until), until]
        return max(b - a for a, b in itertools.pairwise(times))


@dataclass(frozen=True)
class Ledger:
    """Acknowledged readings against the outputs: what was lost, what came twice."""

    sent: set[Reading]
    outputs: Counter[Reading]

    @property
    def lost(self) -> list[Reading]:
        """Acknowledged readings that never reached ``out``, in send order."""
        return sorted((r for r in self.sent if r not in self.outputs), key=lambda r: r[1])

    @property
    def duplicated(self) -> int:
        """Outputs beyond the first of each acknowledged reading."""
        return sum(self.outputs[r] - 1 for r in self.sent if self.outputs[r] > 1)
