"""Registry replicas: several registries ingesting one fleet into one database.

Each replica subscribes to the node channels, the events and the queries as members of one
shared subscription (``$share/{group}/...``, :attr:`RegistrySettings.share`), so the broker
hands each message to one replica and nothing is ingested twice. The embedded broker keeps a
topic at one member while the group stays the same (``fogmesh.broker.shared``): each node is
heard by one replica, which judges its liveness as a lone registry would. A replica learns
what the others stored from the database (:class:`ReplicaView`, a snapshot of every node's
``last_seen`` and state, read every ``period`` seconds):

* a node it hears: judged by the newer of its own and the stored sign of life (a broker that
  shares round-robin, as Mosquitto 2 and NATS do, hands a node's heartbeats to every replica
  in turn);
* a node it does not hear (loaded from the database at start, or moved away): stored offline
  is offline here too, silently; otherwise it is judged lost only when it has been silent one
  interval past ``missed`` everywhere, which means the replica that heard it is gone as well
  (a replica that is alive judges its own nodes an interval sooner).

When a replica dies the broker moves its topics to the others, which hear those nodes from
the next message on. Times in the database are the writing replica's wall clock: replicas on
other machines need synchronised clocks (NTP), as the liveness margins are seconds.
"""

from __future__ import annotations

import asyncio
import time

from sqlalchemy import Engine, select

from fogmesh.registry.db.writes import NODES

__all__ = ["ReplicaView", "shared_filter"]


def shared_filter(topic_filter: str, group: str | None) -> str:
    """``topic_filter`` as a member of the shared subscription ``group`` (None: as it is)."""
    return topic_filter if group is None else f"$share/{group}/{topic_filter}"


class ReplicaView:
    """What every replica stored of each node: ``(last_seen, state)``, ``last_seen`` made
    monotonic on this machine (for :attr:`LivenessTracker.elsewhere`)."""

    def __init__(self, engine: Engine, *, period: float) -> None:
        self.engine = engine
        self.period = period
        self._nodes: dict[str, tuple[float, str]] = {}
        self._intervals: dict[str, float] = {}
        self.reads = 0

    def lookup(self, node: str) -> tuple[float, str] | None:
        """The stored sign of life and state of ``node`` as of the last read (None: unknown)."""
        return self._nodes.get(node)

    def interval(self, node: str) -> float | None:
        """The heartbeat interval ``node`` last announced, as stored (None: none yet)."""
        return self._intervals.get(node)

    def _read(self) -> tuple[dict[str, tuple[float, str]], dict[str, float]]:
        query = select(NODES.c.node, NODES.c.last_seen, NODES.c.state, NODES.c.heartbeat_interval_s)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        offset = time.monotonic() - time.time()
        nodes = {node: (seen + offset, state) for node, seen, state, _ in rows}
        return nodes, {node: every for node, _, _, every in rows if every}

    async def refresh(self) -> None:
        """Read the snapshot once."""
        self._nodes, self._intervals = await asyncio.to_thread(self._read)
        self.reads += 1

    async def run(self) -> None:
        """Refresh every ``period`` seconds until cancelled."""
        while True:
            await self.refresh()
            await asyncio.sleep(self.period)
