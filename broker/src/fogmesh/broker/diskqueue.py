"""A bounded, ordered, disk-backed message queue (SQLite in WAL mode), one per link direction.

A message is appended (and committed) before the receiving MQTT side acknowledges it, and
removed only after the far broker acknowledged it, so a crash loses nothing that was acked.
A burst of arrivals is committed in one transaction, then all of them are acknowledged.

Drop policy when the queue holds ``max_messages``: ``oldest`` deletes the head to make room
(recent telemetry matters most after a long partition), ``newest`` refuses the new message.
Either way :attr:`DiskQueue.dropped` counts it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = ["DiskQueue", "QueuedMessage"]


@dataclass(frozen=True, slots=True)
class QueuedMessage:
    """One message waiting to cross."""

    seq: int
    topic: str
    payload: bytes
    qos: int
    retain: bool


class DiskQueue:
    """FIFO of :class:`QueuedMessage` in one SQLite table."""

    def __init__(
        self, path: Path, *, max_messages: int, drop: Literal["oldest", "newest"] = "oldest"
    ) -> None:
        """Open or create the queue file; messages left by an earlier run are kept."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None)
        # one process owns a link's queue: holding the lock spares two fcntl() per statement,
        # and a second process started on the same queue by mistake fails instead of sharing it
        self._db.execute("PRAGMA locking_mode=EXCLUSIVE")
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL: a commit survives a process crash (SIGKILL); FULL would add power-loss safety
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS q (seq INTEGER PRIMARY KEY AUTOINCREMENT,"
            " topic TEXT NOT NULL, payload BLOB NOT NULL, qos INTEGER NOT NULL,"
            " retain INTEGER NOT NULL)"
        )
        self.max_messages = max_messages
        self.drop = drop
        self.dropped = 0
        self._depth = int(self._db.execute("SELECT COUNT(*) FROM q").fetchone()[0])

    def __len__(self) -> int:
        """Messages waiting."""
        return self._depth

    def put(self, topic: str, payload: bytes, qos: int, *, retain: bool) -> bool:
        """Append one message (committed on return). False if the drop policy refused it."""
        return self.put_many([(topic, payload, qos, retain)]) == 1

    def put_many(self, messages: Sequence[tuple[str, bytes, int, bool]]) -> int:
        """Append ``(topic, payload, qos, retain)`` rows in one transaction (all or none).

        Committed on return; returns how many the drop policy accepted.
        """
        if not messages:
            return 0
        depth, dropped = self._depth, self.dropped
        accepted = 0
        self._db.execute("BEGIN")
        try:
            for topic, payload, qos, retain in messages:
                accepted += self._append(topic, payload, qos, retain=retain)
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:  # SQLite ends it itself on some errors (a full disk)
                self._db.execute("ROLLBACK")
            self._depth, self.dropped = depth, dropped
            raise
        return accepted

    def _append(self, topic: str, payload: bytes, qos: int, *, retain: bool) -> bool:
        if self._depth >= self.max_messages:
            self.dropped += 1
            if self.drop == "newest":
                return False
            self._db.execute("DELETE FROM q WHERE seq = (SELECT MIN(seq) FROM q)")
            self._depth -= 1
        self._db.execute(
            "INSERT INTO q (topic, payload, qos, retain) VALUES (?,?,?,?)",
            (topic, payload, qos, int(retain)),
        )
        self._depth += 1
        return True

    def peek(self, limit: int) -> list[QueuedMessage]:
        """The first ``limit`` messages, oldest first, without removing them."""
        rows = self._db.execute(
            "SELECT seq, topic, payload, qos, retain FROM q ORDER BY seq LIMIT ?", (limit,)
        ).fetchall()
        return [QueuedMessage(r[0], r[1], bytes(r[2]), r[3], bool(r[4])) for r in rows]

    def peek_range(
        self, limit: int, *, after: int = 0, through: int | None = None
    ) -> list[QueuedMessage]:
        """Up to ``limit`` messages with ``after < seq <= through``, oldest first."""
        rows = self._db.execute(
            "SELECT seq, topic, payload, qos, retain FROM q WHERE seq > ? AND seq <= ?"
            " ORDER BY seq LIMIT ?",
            (after, self.last_seq() if through is None else through, limit),
        ).fetchall()
        return [QueuedMessage(r[0], r[1], bytes(r[2]), r[3], bool(r[4])) for r in rows]

    def last_seq(self) -> int:
        """The newest message's ``seq`` (0 when empty)."""
        return int(self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM q").fetchone()[0])

    def newest_by_topic(self, through: int) -> dict[str, int]:
        """Each topic's newest ``seq`` among the messages up to ``through``."""
        rows = self._db.execute(
            "SELECT topic, MAX(seq) FROM q WHERE seq <= ? GROUP BY topic", (through,)
        ).fetchall()
        return {r[0]: int(r[1]) for r in rows}

    def remove_range(self, after: int, through: int) -> None:
        """Delete the messages with ``after < seq <= through`` (they reached the far side)."""
        cur = self._db.execute("DELETE FROM q WHERE seq > ? AND seq <= ?", (after, through))
        self._depth = max(0, self._depth - cur.rowcount)

    def remove_seqs(self, seqs: Sequence[int]) -> None:
        """Delete the messages of these ``seq`` (they reached the far side)."""
        cur = self._db.executemany("DELETE FROM q WHERE seq = ?", [(s,) for s in seqs])
        self._depth = max(0, self._depth - cur.rowcount)

    def remove_through(self, seq: int) -> None:
        """Delete every message up to and including ``seq`` (they reached the far side)."""
        cur = self._db.execute("DELETE FROM q WHERE seq <= ?", (seq,))
        self._depth = max(0, self._depth - cur.rowcount)

    def close(self) -> None:
        """Close the file."""
        self._db.close()
