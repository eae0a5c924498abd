"""A small SQLite plugin that keeps sessions, their queued messages and retained messages.

amqtt's shipped ``SessionDBPlugin`` wipes everything on a clean shutdown by default and never
forgets queued messages once they are delivered, so this one replaces it. What it stores:

* ``sessions``: every persistent (clean_session=0) session, its subscriptions, last disconnect;
* ``queued``: QoS>0 messages waiting for a disconnected persistent session, in order. A row
  stays until the client acknowledges its delivery (:meth:`SqlitePersistencePlugin.queued_done`,
  batched), not only until the session connects: a broker killed while delivering the queue
  delivers what was not acknowledged again after its restart (at-least-once, in order);
* ``retained``: the broker's retained messages, with the client id that published each (a
  link is never handed back a retained message it brought, also after a restart);
* ``inbound``: the journal of incoming QoS>0 messages. A message is written here *before* the
  broker acknowledges it (PUBACK), and deleted once it was broadcast: stored for every offline
  persistent session and acknowledged by every connected one. What a crash leaves here is
  broadcast again when the broker starts (at-least-once: a subscriber may see it twice).

Writes are synchronous sqlite3 calls in WAL mode: small, ordered by the event loop, and durable
against a process crash (``synchronous=NORMAL``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from amqtt.broker import BrokerContext, RetainedApplicationMessage
from amqtt.plugins.base import BasePlugin
from amqtt.session import Session

__all__ = ["InboundMessage", "JournalRow", "RetainedSource", "SqlitePersistencePlugin"]

log = logging.getLogger(__name__)
QUEUED_FLUSH = 0.05
"""Seconds acknowledged queue rows and ended journal entries wait to be deleted together (a
crash meanwhile: a duplicate)."""

JournalRow = tuple[str | None, str, bytes, int, bool]
"""An incoming message for the journal: client id, topic, payload, QoS, retain."""
_ORPHANS = "DELETE FROM queued WHERE client_id NOT IN (SELECT client_id FROM sessions)"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    client_id TEXT PRIMARY KEY, username TEXT, subscriptions TEXT NOT NULL DEFAULT '{}',
    last_seen REAL NOT NULL, connected INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS queued (
    id INTEGER PRIMARY KEY AUTOINCREMENT, client_id TEXT NOT NULL,
    topic TEXT NOT NULL, data BLOB NOT NULL, qos INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS queued_client ON queued (client_id, id);
CREATE TABLE IF NOT EXISTS retained (topic TEXT PRIMARY KEY, data BLOB NOT NULL, qos INTEGER);
CREATE TABLE IF NOT EXISTS inbound (
    id INTEGER PRIMARY KEY AUTOINCREMENT, client_id TEXT, topic TEXT NOT NULL,
    data BLOB NOT NULL, qos INTEGER NOT NULL, retain INTEGER NOT NULL);
"""


@dataclass(frozen=True)
class RetainedSource:
    """Stands in for the publisher's session of a retained message restored from disk."""

    client_id: str


@dataclass(frozen=True)
class InboundMessage:
    """A journalled incoming message: acknowledged to its publisher, not yet fully broadcast."""

    id: int
    client_id: str | None
    topic: str
    data: bytes
    qos: int
    retain: bool


@dataclass
class _Config:
    path: str = "broker.sqlite"
    session_expiry: int = 7 * 24 * 3600


class SqlitePersistencePlugin(BasePlugin[BrokerContext]):  # type: ignore[misc]
    """Saves broker state as it changes and restores it when the broker starts."""

    Config = _Config

    def __init__(self, context: BrokerContext) -> None:
        """Open (or create) the database file."""
        super().__init__(context)
        cfg: Any = context.config
        path = Path(getattr(cfg, "path", "broker.sqlite"))
        path.parent.mkdir(parents=True, exist_ok=True)
        self._expiry = int(getattr(cfg, "session_expiry", _Config.session_expiry))
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(retained)")}
        if "source" not in columns:  # a database from before retained messages kept it
            self._db.execute("ALTER TABLE retained ADD COLUMN source TEXT")
        # id(queued message) -> (message, row, client id), until its delivery takes the row
        self._rows: dict[int, tuple[RetainedApplicationMessage, int, str]] = {}
        self._acked: list[int] = []  # rows whose delivery was acknowledged, not yet deleted
        self._ended: list[int] = []  # journal entries broadcast and stored, not yet deleted
        self._flush: asyncio.TimerHandle | None = None

    def _subs(self, client_id: str) -> dict[str, int]:
        row = self._db.execute(
            "SELECT subscriptions FROM sessions WHERE client_id=?", (client_id,)
        ).fetchone()
        return dict(json.loads(row[0])) if row else {}

    def _save(self, client_id: str, subs: dict[str, int], *, connected: bool) -> None:
        # the username goes with the session: restored subscriptions are re-checked by the ACL
        session = self.context.get_session(client_id)
        username = session.username if session is not None else None
        self._db.execute(
            "INSERT INTO sessions (client_id, username, subscriptions, last_seen, connected)"
            " VALUES (?,?,?,?,?) ON CONFLICT(client_id) DO UPDATE SET"
            " username=coalesce(excluded.username, username),"
            " subscriptions=excluded.subscriptions,"
            " last_seen=excluded.last_seen, connected=excluded.connected",
            (client_id, username, json.dumps(subs), time.time(), int(connected)),
        )

    async def on_broker_client_connected(self, client_id: str, client_session: Session) -> None:
        """Record a persistent session (its queue rows stay until each delivery is acked)."""
        if client_session.clean_session:
            self._db.execute("DELETE FROM sessions WHERE client_id=?", (client_id,))
            self._db.execute("DELETE FROM queued WHERE client_id=?", (client_id,))
            for key in [k for k, (_, _, c) in self._rows.items() if c == client_id]:
                del self._rows[key]
            return
        self._save(client_id, self._subs(client_id), connected=True)

    async def on_broker_client_disconnected(self, client_id: str, client_session: Session) -> None:
        """Note when a persistent session went away (for expiry)."""
        if client_session.clean_session:
            self._db.execute("DELETE FROM sessions WHERE client_id=?", (client_id,))
            return
        self._save(client_id, self._subs(client_id), connected=False)
        await self.expire()

    async def on_broker_client_subscribed(self, client_id: str, topic: str, qos: int) -> None:
        """Remember a persistent session's subscription."""
        session = self.context.get_session(client_id)
        if session is None or session.clean_session:
            return
        subs = self._subs(client_id)
        subs[topic] = qos
        self._save(client_id, subs, connected=True)

    async def on_broker_client_unsubscribed(self, client_id: str, topic: str) -> None:
        """Forget a persistent session's subscription."""
        subs = self._subs(client_id)
        if subs.pop(topic, None) is not None:
            self._save(client_id, subs, connected=True)

    async def on_broker_retained_message(
        self, *, client_id: str | None, retained_message: RetainedApplicationMessage
    ) -> None:
        """Store a message queued for an offline session, or a retained message (or its removal)."""
        data = bytes(retained_message.data or b"")
        if client_id is not None:
            cur = self._db.execute(
                "INSERT INTO queued (client_id, topic, data, qos) VALUES (?,?,?,?)",
                (client_id, retained_message.topic, data, retained_message.qos or 0),
            )
            row = int(cur.lastrowid or 0)
            self._rows[id(retained_message)] = (retained_message, row, client_id)
        elif data:
            source = retained_message.source_session
            self._db.execute(
                "INSERT OR REPLACE INTO retained (topic, data, qos, source) VALUES (?,?,?,?)",
                (
                    retained_message.topic,
                    data,
                    retained_message.qos or 0,
                    source and source.client_id,
                ),
            )
        else:
            self._db.execute("DELETE FROM retained WHERE topic=?", (retained_message.topic,))

    async def on_broker_post_start(self) -> None:
        """Restore unexpired sessions with their subscriptions and queues, and retained messages."""
        cutoff = time.time() - self._expiry
        # A session "connected" at a crash has been dead since the crash: restart its clock now.
        self._db.execute(
            "UPDATE sessions SET last_seen=?, connected=0 WHERE connected=1", (time.time(),)
        )
        self._db.execute("DELETE FROM sessions WHERE last_seen < ?", (cutoff,))
        self._db.execute(
            "DELETE FROM queued WHERE client_id NOT IN (SELECT client_id FROM sessions)"
        )
        rows = self._db.execute(
            "SELECT client_id, username, subscriptions, last_seen FROM sessions"
        ).fetchall()
        for client_id, username, subs_json, last_seen in rows:
            await self.context.add_subscription(client_id, None, None)
            session = self.context.get_session(client_id)
            if session is None:
                continue
            session.username = username
            session.clean_session = False
            session.last_disconnect_time = int(last_seen)
            for topic, qos in json.loads(subs_json).items():
                await self.context.add_subscription(client_id, topic, int(qos))
            for row, topic, data, qos in self._db.execute(
                "SELECT id, topic, data, qos FROM queued WHERE client_id=? ORDER BY id",
                (client_id,),
            ).fetchall():
                queued = RetainedApplicationMessage(None, topic, bytes(data), qos)
                self._rows[id(queued)] = (queued, int(row), client_id)
                await session.retained_messages.put(queued)
        retained = self.context.retained_messages
        for topic, data, qos, source in self._db.execute(
            "SELECT topic, data, qos, source FROM retained"
        ):
            # who published it decides where it may be replayed (split horizon for links)
            publisher = None if source is None else RetainedSource(client_id=source)
            retained[topic] = RetainedApplicationMessage(publisher, topic, bytes(data), qos)
        log.info("restored %d sessions and %d retained messages", len(rows), len(retained))

    def forget_subscriptions(self, client_id: str, filters: list[str]) -> None:
        """Drop ``filters`` from a session (handed on to another broker); with none left, the
        session and what is still queued for it."""
        subs = self._subs(client_id)
        for flt in filters:
            subs.pop(flt, None)
        if subs:
            self._db.execute(
                "UPDATE sessions SET subscriptions=? WHERE client_id=?",
                (json.dumps(subs), client_id),
            )
            return
        self._db.execute("DELETE FROM sessions WHERE client_id=?", (client_id,))
        self._db.execute("DELETE FROM queued WHERE client_id=?", (client_id,))
        for key in [k for k, (_, _, c) in self._rows.items() if c == client_id]:
            del self._rows[key]

    # ---- queue rows of a session being delivered (called by the broker) ----

    def take_queued_row(self, message: RetainedApplicationMessage) -> int | None:
        """The row that keeps ``message`` (taken from a session's queue for delivery)."""
        entry = self._rows.pop(id(message), None)
        return None if entry is None else entry[1]

    def queued_done(self, row: int) -> None:
        """The client acknowledged the delivery of queue row ``row``: delete it (batched)."""
        self._acked.append(row)
        self._flush_soon()

    def _flush_soon(self) -> None:
        if self._flush is None:
            self._flush = asyncio.get_running_loop().call_later(QUEUED_FLUSH, self.flush_queued)

    def flush_queued(self) -> None:
        """Delete the acknowledged queue rows and the ended journal entries now, in one
        transaction."""
        self._flush = None
        rows, self._acked = self._acked, []
        ended, self._ended = self._ended, []
        if not rows and not ended:
            return
        with self._db:  # one commit for the batch
            self._db.execute("BEGIN")
            self._db.executemany("DELETE FROM queued WHERE id=?", [(r,) for r in rows])
            self._db.executemany("DELETE FROM inbound WHERE id=?", [(e,) for e in ended])

    # ---- the inbound journal (the broker's group commit writes it, before the PUBACK) ----

    def journal_add_many(self, rows: list[JournalRow]) -> list[int]:
        """Journal incoming messages ``(client_id, topic, data, qos, retain)`` in one
        transaction; their ids, in order. Committed when this returns (all or none)."""
        ids: list[int] = []
        with self._db:  # one commit for the group
            self._db.execute("BEGIN")
            for client_id, topic, data, qos, retain in rows:
                cur = self._db.execute(
                    "INSERT INTO inbound (client_id, topic, data, qos, retain) VALUES (?,?,?,?,?)",
                    (client_id, topic, data, qos, int(retain)),
                )
                ids.append(int(cur.lastrowid or 0))
        return ids

    def journal_done(self, entry: int) -> None:
        """The message is broadcast and stored wherever it must be: forget it (batched with
        the queue rows: a crash before the batch is written broadcasts it again)."""
        self._ended.append(entry)
        self._flush_soon()

    def journal_pending(self) -> list[InboundMessage]:
        """What a crash left unbroadcast, oldest first."""
        rows = self._db.execute(
            "SELECT id, client_id, topic, data, qos, retain FROM inbound ORDER BY id"
        ).fetchall()
        return [InboundMessage(r[0], r[1], r[2], bytes(r[3]), r[4], bool(r[5])) for r in rows]

    async def expire(self) -> None:
        """Drop sessions dead for longer than the expiry (the broker drops them from memory)."""
        cutoff = time.time() - self._expiry
        self._db.execute("DELETE FROM sessions WHERE connected=0 AND last_seen < ?", (cutoff,))
        self._db.execute(
            "DELETE FROM queued WHERE client_id NOT IN (SELECT client_id FROM sessions)"
        )

    async def close(self) -> None:
        """Close the database (state stays on disk: that is the point)."""
        if self._flush is not None:
            self._flush.cancel()
        self.flush_queued()
        self._db.close()
