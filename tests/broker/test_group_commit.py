"""The inbound journal's group commit (fogmesh.broker.journal.GroupCommit): the rows of one loop
pass in one commit, their adders resumed in order; a failed commit fails them all (none is
acknowledged); a row whose adder went away before the commit is dropped again.

The store here is a real SQLite table; the broker's own path through it (PUBACK only after the
commit, nothing acknowledged lost when the broker is killed) is driven in test_broker_crash.py.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from fogmesh.broker.journal import GroupCommit
from fogmesh.broker.persistence import JournalRow


class Table:
    """A journal table with a commit counter; ``fail`` makes the next commit raise."""

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("CREATE TABLE inbound (id INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT)")
        self.commits = 0
        self.fail = False

    def write(self, rows: list[JournalRow]) -> list[int]:
        if self.fail:
            raise sqlite3.OperationalError("database or disk is full")
        self.commits += 1
        with self.db:
            self.db.execute("BEGIN")
            ids = []
            for r in rows:
                cur = self.db.execute("INSERT INTO inbound (topic) VALUES (?)", (r[1],))
                ids.append(int(cur.lastrowid or 0))
            return ids

    def drop(self, entry: int) -> None:
        self.db.execute("DELETE FROM inbound WHERE id=?", (entry,))

    def topics(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT topic FROM inbound ORDER BY id")]


def row(topic: str) -> JournalRow:
    return ("client", topic, b"x", 1, False)


async def test_one_pass_is_one_commit_and_adders_resume_in_order(tmp_path: Path) -> None:
    table = Table(tmp_path / "j.sqlite")
    group = GroupCommit(table.write, table.drop)
    resumed: list[str] = []

    async def add(topic: str) -> None:
        await group.add(row(topic))
        resumed.append(topic)

    topics = [f"t/{i}" for i in range(50)]
    await asyncio.gather(*(add(t) for t in topics))
    assert table.commits == 1
    assert resumed == topics
    assert table.topics() == topics
    await add("t/next")  # a later pass: a commit of its own
    assert table.commits == 2


async def test_a_failed_commit_fails_every_adder_of_its_group(tmp_path: Path) -> None:
    table = Table(tmp_path / "j.sqlite")
    group = GroupCommit(table.write, table.drop)
    table.fail = True
    waiters = [group.add(row(f"t/{i}")) for i in range(3)]
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert all(isinstance(r, sqlite3.OperationalError) for r in results)
    assert table.topics() == []
    table.fail = False
    assert await group.add(row("t/again")) > 0  # the next group commits
    assert table.topics() == ["t/again"]


async def test_a_row_whose_adder_went_away_is_dropped(tmp_path: Path) -> None:
    table = Table(tmp_path / "j.sqlite")
    group = GroupCommit(table.write, table.drop)
    kept = group.add(row("t/kept"))
    gone = group.add(row("t/gone"))
    gone.cancel()  # its connection closed before the commit: never acknowledged
    await kept
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert table.topics() == ["t/kept"]
