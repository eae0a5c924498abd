"""What the registry bench measures, from the database and from the broker: :class:`DbProbe`
(the registry's rows), :class:`BusProbe` (a plain MQTT subscriber: the broker baseline, flap
and join events) and the polls over them (the join, the lag window)."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiomqtt
from registry_sim import ROOT
from sqlalchemy import Engine, bindparam, text
from sqlalchemy.exc import SQLAlchemyError

__all__ = [
    "FLAP_KINDS",
    "JOINED",
    "POLL_S",
    "BusProbe",
    "DbProbe",
    "join",
    "lag_window",
    "poll",
]

POLL_S = 0.05
FLAP_KINDS = ("node-stale", "node-lost")
JOINED = "node-joined"


@dataclass
class DbProbe:
    """Reads the registry's database (sync; called through ``asyncio.to_thread``)."""

    engine: Engine

    def ready(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT count(*) FROM nodes"))
        except SQLAlchemyError:  # the schema is not created yet
            return False
        return True

    def counts(self) -> tuple[int, int, int]:
        """(nodes with facts and a heartbeat, nodes not online, sum of last seqs)."""
        sql = text(
            "SELECT COALESCE(SUM(CASE WHEN last_seq IS NOT NULL AND facts IS NOT NULL"
            " THEN 1 ELSE 0 END), 0), COALESCE(SUM(CASE WHEN state <> 'online' THEN 1 ELSE 0"
            " END), 0), COALESCE(SUM(last_seq), 0) FROM nodes"
        )
        with self.engine.connect() as conn:
            row = conn.execute(sql).one()
        return int(row[0]), int(row[1]), int(row[2])

    def beat_since(self, t: float) -> int:
        """Nodes with a heartbeat made after the unix time ``t`` stored."""
        sql = text("SELECT count(*) FROM nodes WHERE heartbeat_ts > :t")
        with self.engine.connect() as conn:
            return int(conn.execute(sql, {"t": t}).scalar() or 0)

    def holes(self, nodes: list[str]) -> dict[str, list[int]]:
        """Of ``nodes``, those whose stored usage history (the last ``--history`` heartbeats)
        lacks a sequence number between its lowest and highest: heartbeats never stored (lost
        on the way, or left by every replica), as opposed to stored late."""
        if not nodes:
            return {}
        sql = text("SELECT node, seq FROM usage_history WHERE node IN :nodes")
        sql = sql.bindparams(bindparam("nodes", expanding=True))
        seqs: dict[str, set[int]] = {}
        with self.engine.connect() as conn:
            for node, seq in conn.execute(sql, {"nodes": nodes}):
                seqs.setdefault(node, set()).add(int(seq))
        missing = {n: sorted(set(range(min(s), max(s) + 1)) - s) for n, s in seqs.items()}
        return {n: m for n, m in missing.items() if m}

    def seqs(self, sample: list[str]) -> list[tuple[str, int | None, float | None]]:
        sql = text("SELECT node, last_seq, heartbeat_ts FROM nodes WHERE node IN :nodes")
        sql = sql.bindparams(bindparam("nodes", expanding=True))
        with self.engine.connect() as conn:
            return [(r[0], r[1], r[2]) for r in conn.execute(sql, {"nodes": sample})]


@dataclass
class BusProbe:
    """One plain MQTT subscriber: the sample's heartbeats (the baseline), flap events (each
    with the phase of the run it came in, the replica that judged and the silence it judged)
    and joins (a node joined more than once was taken by two replicas)."""

    port: int
    sample: list[str]
    credentials: tuple[str, str] | None = None
    baseline: list[float] = field(default_factory=list)
    flapped: set[str] = field(default_factory=set)
    phase: str = "start"
    """Set by :func:`measure`: join, settle, window, failover."""
    flaps: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    """(phase, source, kind) of each flap event."""
    silent_max_s: float = 0.0
    joins: Counter[str] = field(default_factory=Counter)

    def flap_summary(self) -> dict[str, Any]:
        """The flaps by phase, replica and kind; the longest silence judged; the nodes joined
        more than once."""
        by: dict[str, dict[str, int]] = {}
        for (phase, source, kind), n in sorted(self.flaps.items()):
            by.setdefault(phase, {})[f"{source} {kind}"] = n
        return {
            "flaps_by_phase": by,
            "flap_silent_max_s": round(self.silent_max_s, 1),
            "joined_more_than_once": sum(1 for n in self.joins.values() if n > 1),
        }

    async def run(self, subscribed: asyncio.Event) -> None:
        user, password = self.credentials or (None, None)
        async with aiomqtt.Client(
            "127.0.0.1", self.port, identifier="bench-probe", username=user, password=password
        ) as client:
            filters = [(f"{ROOT}/{n}/heartbeat", 0) for n in self.sample]
            filters += [(f"fm/v1/events/fleet/{kind}", 1) for kind in (*FLAP_KINDS, JOINED)]
            await client.subscribe(filters)
            subscribed.set()
            async for message in client.messages:
                now = time.time()
                payload = message.payload
                if not isinstance(payload, bytes | bytearray):
                    continue
                data = json.loads(payload)
                if message.topic.matches(f"{ROOT}/+/heartbeat"):
                    self.baseline.append(now - data["ts"])
                elif data.get("kind") == JOINED:
                    self.joins[data.get("node") or "?"] += 1
                else:
                    self.flapped.add(data.get("node") or "?")
                    key = (self.phase, str(data.get("source")), str(data.get("kind")))
                    self.flaps[key] += 1
                    silent = (data.get("data") or {}).get("silent_s") or 0.0
                    self.silent_max_s = max(self.silent_max_s, float(silent))


async def poll(probe: DbProbe, what: str, done: Any, timeout: float) -> float:
    """Poll ``done(probe)`` (in a thread) every 0.5 s; return the seconds it took."""
    t0 = time.monotonic()
    while not await asyncio.to_thread(done, probe):
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(f"{what} not within {timeout:.0f} s")
        await asyncio.sleep(0.5)
    return time.monotonic() - t0


async def join(probe: DbProbe, nodes: int, *, timeout: float) -> float | None:
    """Seconds until every node's facts and a heartbeat are stored (None: not in time; the
    run is measured anyway, as it stands)."""
    try:
        return await poll(probe, "the join", lambda p: p.counts()[0] >= nodes, timeout)
    except TimeoutError:
        joined = (await asyncio.to_thread(probe.counts))[0]
        print(f"only {joined} of {nodes} nodes joined within {timeout:.0f} s", flush=True)
        return None


async def lag_window(probe: DbProbe, sample: list[str], seconds: float) -> list[float]:
    """Each sampled node's heartbeats: publish time to visible in the database."""
    seen = {n: s for n, s, _ in await asyncio.to_thread(probe.seqs, sample)}
    lags: list[float] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        await asyncio.sleep(POLL_S)
        now = time.time()  # visible rows were committed before the query began
        for node, seq, ts in await asyncio.to_thread(probe.seqs, sample):
            if seq != seen.get(node) and ts is not None:
                seen[node] = seq
                lags.append(now - ts)
    return lags
