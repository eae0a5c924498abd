"""Replicas that split the fleet themselves, for brokers without shared subscriptions.

NATS 2.9's MQTT gateway speaks MQTT 3.1.1 only: ``$share/{group}/...`` is a plain filter there
(subject ``$share.{group}...``) that no node's topic matches, so replicas subscribed that way
hear nothing. With ``--share-by registry`` every replica of the group subscribes to the plain
filters and ingests only the messages whose key it owns:

* the key of a node channel is the node id (a node's hello, state, heartbeats and actual state
  all go to one replica, in order), of anything else (events, queries) its payload bytes;
* the owner is chosen by rendezvous hashing of the key over the live members of the group: the
  replica id with the highest ``blake2b(replica, key)``; every replica computes the same owner,
  and when a member leaves only the keys it had move, each to one of the others;
* the members are rows of ``registry_replicas`` (group, replica, ``seen_at``) in the shared
  database: each replica writes its own row every ``period`` and reads the others'; a row not
  written for :data:`LIVE_PERIODS` periods is a dead member (a replica stopping cleanly deletes
  its row at once);
* a replica joins (writes its first row) once its subscriptions are granted, never before: a
  member that owns keys it does not hear yet would leave them unheard (on NATS a QoS 1
  subscription is a JetStream consumer, which may take seconds to create). Until it has joined
  it takes every key if it found no live member when it started, as a lone registry would, and
  none otherwise: the live members, which do not know it yet, still take every key, so the
  retained hellos replayed to it as it subscribes are not taken twice;
* replicas started together into an empty group each find no live member, so each takes every
  key until they see each other's rows (up to a period): a node new to the fleet is then taken
  by both, and its ``node-joined`` is recorded and published by the one whose write batch
  creates the node's row (``EventOp.claim``; the database picks one), so every node joins
  once whatever the start order; the other takes the node as that row stores it
  (:mod:`fogmesh.registry.claims`: a ``node-back`` if the join's sign of life brings it back).

Each replica still receives every message (the broker cannot split them); a message of a key
it does not own is dropped before its payload is parsed, so the parsing, the liveness work and
the database writes are done once. While the members change, replicas may disagree for up to a
period: a key may then be ingested by two (the writes are idempotent upserts) or by none (a
heartbeat or two missed, well inside the stale margin). A node whose message a replica
leaves to another is that one's to judge: the replica judges it as a node it does not hear
(lost only once silent one interval past ``missed`` everywhere, :mod:`fogmesh.registry.replicas`),
so when its owner dies, the moments until the others see the row age out and hear the node's
next heartbeat never look late.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

import structlog
from pydantic import BaseModel, ValidationError
from sqlalchemy import (
    Column,
    Connection,
    Engine,
    Float,
    MetaData,
    String,
    Table,
    delete,
    select,
    update,
)
from sqlalchemy.exc import SQLAlchemyError

from fogmesh.bus import Bus, MessageContext, RawMessage
from fogmesh.registry.db.engine import ddl_lock

__all__ = ["LIVE_PERIODS", "REPLICAS", "Partition", "owner_of"]

log = structlog.get_logger("fogmesh.registry.partition")

LIVE_PERIODS = 2
"""A member whose row is older than this many periods is gone."""

_LOCK = 0x666D_7265_706C  # "fmrepl": the lock the table is created under (ddl_lock)

_META = MetaData()
REPLICAS = Table(
    "registry_replicas",
    _META,
    Column("grp", String(64), primary_key=True),
    Column("replica", String(256), primary_key=True),
    Column("seen_at", Float, nullable=False),
)


def _weight(member: str, key: bytes) -> bytes:
    return hashlib.blake2b(member.encode() + b"\x00" + key, digest_size=8).digest()


def owner_of(key: bytes, members: list[str]) -> str:
    """The member that owns ``key`` (rendezvous hashing; ``members`` must not be empty)."""
    return max(members, key=lambda m: _weight(m, key))


class Partition:
    """This replica's share of the fleet: who the members are, and which keys are its own."""

    def __init__(
        self,
        engine: Engine,
        *,
        group: str,
        me: str,
        period: float,
        left: Callable[[str], None] = lambda _node: None,
    ) -> None:
        self.engine = engine
        self.left = left
        """Told each node whose message was left to another member (that member judges it)."""
        self.group = group
        self.me = me
        self.period = period
        self.members: list[str] = [me]
        self.dropped = 0
        """Messages seen and left to another member."""
        self.joined = asyncio.Event()

    def owns(self, key: bytes) -> bool:
        """Whether this replica ingests messages of ``key``."""
        members = self.members
        if not self.joined.is_set():  # alone: every key; beside live members: none of them yet
            return len(members) == 1
        return len(members) == 1 or owner_of(key, members) == self.me

    async def on_connect(self, _bus: Bus) -> None:
        """For :meth:`Bus.on_connect`: the subscriptions are granted, so join (again)."""
        await self.refresh()
        self.joined.set()

    def _create(self) -> None:
        with self.engine.begin() as conn:
            ddl_lock(conn, _LOCK)
            _META.create_all(conn)

    def _beat(self) -> list[str]:
        now = time.time()
        mine = (REPLICAS.c.grp == self.group) & (REPLICAS.c.replica == self.me)
        with self.engine.begin() as conn:
            if conn.execute(update(REPLICAS).where(mine).values(seen_at=now)).rowcount == 0:
                conn.execute(REPLICAS.insert().values(grp=self.group, replica=self.me, seen_at=now))
            return self._live_in(conn, now)

    def _live_in(self, conn: Connection, now: float) -> list[str]:
        fresh = now - LIVE_PERIODS * self.period
        rows = conn.execute(
            select(REPLICAS.c.replica).where(
                (REPLICAS.c.grp == self.group) & (REPLICAS.c.seen_at >= fresh)
            )
        ).all()
        return sorted({self.me, *(r for (r,) in rows)})

    def _live(self) -> list[str]:
        """The live members of the group, this one included, without writing its row."""
        with self.engine.begin() as conn:
            return self._live_in(conn, time.time())

    def _leave(self) -> None:
        mine = (REPLICAS.c.grp == self.group) & (REPLICAS.c.replica == self.me)
        with self.engine.begin() as conn:
            conn.execute(delete(REPLICAS).where(mine))

    async def prepare(self) -> None:
        """Create the table if needed and read who is live (before connecting)."""
        await asyncio.to_thread(self._create)
        self.members = await asyncio.to_thread(self._live)

    async def refresh(self) -> None:
        """Write this member's row and read who is live."""
        members = await asyncio.to_thread(self._beat)
        if members != self.members:
            log.info("registry replicas", group=self.group, members=members)
        self.members = members

    async def run(self) -> None:
        """Once joined, refresh every ``period`` until cancelled; then leave the group (its
        keys move at once)."""
        await self.joined.wait()
        try:
            while True:
                await asyncio.sleep(self.period)
                await self.refresh()
        finally:
            try:
                await asyncio.shield(asyncio.to_thread(self._leave))
            except SQLAlchemyError as exc:  # the others see the row age out instead
                log.warning("leaving the replica group failed", error=repr(exc))

    def subscriber(self, bus: Bus) -> Bus:
        """``bus`` for :meth:`Ingest.attach` and :meth:`QueryApi.attach`, whose subscriptions
        deliver only the messages this replica owns (they call ``subscribe`` and nothing else)."""
        return cast(Bus, _OwnedSubscriptions(bus, self))


Handler = Callable[[Any, MessageContext], Awaitable[None]]


class _OwnedSubscriptions:
    """Stands in for a bus: subscribes raw, and parses and hands on only what is owned."""

    def __init__(self, bus: Bus, partition: Partition) -> None:
        self.bus = bus
        self.partition = partition

    def subscribe(
        self,
        topic_filter: str,
        model: type[BaseModel],
        handler: Handler,
        *,
        qos: int = 1,
        max_payload: int | None = None,
    ) -> None:
        partition = self.partition

        async def owned(raw: RawMessage, ctx: MessageContext) -> None:
            node = ctx.ref.node if ctx.ref is not None else None
            key = node.encode() if node is not None else raw.payload
            if not partition.owns(key):
                partition.dropped += 1
                if node is not None:
                    partition.left(node)
                return
            if model is RawMessage:
                await handler(raw, ctx)
                return
            try:
                message = model.model_validate_json(raw.payload)
            except ValidationError as exc:
                log.warning("invalid payload", topic=ctx.topic, errors=exc.error_count())
                return
            await handler(message, ctx.with_message(message))

        self.bus.subscribe(topic_filter, RawMessage, owned, qos=qos, max_payload=max_payload)
