"""The embedded broker's inbound journal: an incoming QoS 1 message is durable before its PUBACK.

qos1fix calls :meth:`InboundJournal.journal_incoming` before amqtt acknowledges a message; the
entry is deleted once the message was broadcast, i.e. stored for every offline persistent
session and acknowledged by every connected persistent one. A broker that dies in between
broadcasts the journal again when it starts (at-least-once, never lost).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from amqtt.broker import Broker
from amqtt.session import Session

from fogmesh.broker.persistence import JournalRow, SqlitePersistencePlugin

__all__ = ["GroupCommit", "InboundJournal"]

log = logging.getLogger(__name__)


class GroupCommit:
    """Journal rows added in one pass of the event loop, committed in one transaction at the
    pass's end; each adder waits for its row's id (its message is then durable).

    Rows commit in the order added and their waiters resume in that order, so a client's
    messages keep their order into the broadcast. A failed commit fails every waiter of the
    group (no PUBACK: the client sends those messages again). A waiter cancelled meanwhile (its
    connection went) never acknowledged its message: its row is dropped again.
    """

    def __init__(
        self, write: Callable[[list[JournalRow]], list[int]], drop: Callable[[int], None]
    ) -> None:
        """``write`` commits rows and returns their ids; ``drop`` forgets one."""
        self._write, self._drop = write, drop
        self._rows: list[JournalRow] = []
        self._waiters: list[asyncio.Future[int]] = []

    def add(self, row: JournalRow) -> asyncio.Future[int]:
        """Journal ``row`` with the others of this pass; the future is its id once committed."""
        loop = asyncio.get_running_loop()
        if not self._rows:
            loop.call_soon(self._commit)
        waiter: asyncio.Future[int] = loop.create_future()
        self._rows.append(row)
        self._waiters.append(waiter)
        return waiter

    def _commit(self) -> None:
        rows, waiters = self._rows, self._waiters
        self._rows, self._waiters = [], []
        try:
            ids = self._write(rows)
        except Exception as exc:  # each adder gets it: none is acknowledged
            log.exception("inbound journal: %d messages not stored", len(rows))
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(exc)
            return
        for waiter, entry in zip(waiters, ids, strict=True):
            if waiter.done():  # cancelled: its message was never acknowledged
                self._drop(entry)
            else:
                waiter.set_result(entry)


class InboundJournal(Broker):  # type: ignore[misc]
    """The journal half of :class:`fogmesh.broker.server.MeshBroker`."""

    _store: SqlitePersistencePlugin | None
    _journalled: dict[int, tuple[Any, int]]
    _group: GroupCommit | None = None

    async def start(self) -> None:
        """Start serving, then broadcast what the inbound journal kept from a crash."""
        await super().start()
        if self._store is None:
            return
        pending = self._store.journal_pending()
        for entry in pending:
            source = Session()
            source.client_id = entry.client_id
            if entry.retain:
                await self.retain_message(source, entry.topic, entry.data, entry.qos)
            await self._broadcast_message(
                source, entry.topic, entry.data, retain=entry.retain, journal=entry.id
            )
        if pending:
            log.info("broadcasting %d journalled messages left by a crash", len(pending))

    async def journal_incoming(self, session: Session | None, app_message: Any) -> None:
        """Make an incoming QoS 1 message durable before it is acknowledged (qos1fix awaits
        this): the messages of one loop pass are committed together (:class:`GroupCommit`)."""
        waiter = self.journal_incoming_soon(session, app_message)
        if waiter is not None:
            self.journalled(app_message, await waiter)

    def journal_incoming_soon(
        self, session: Session | None, app_message: Any
    ) -> asyncio.Future[int] | None:
        """Add an incoming QoS 1 message to this pass's group commit, without waiting: its
        entry once committed (hand it to :meth:`journalled`), None if nothing is journalled."""
        if self._store is None or not app_message.topic:
            return None
        packet = app_message.publish_packet
        return self.journal_soon(
            (
                session.client_id if session is not None else None,
                app_message.topic,
                bytes(app_message.data or b""),
                int(app_message.qos or 0),
                bool(packet is not None and packet.retain_flag),
            )
        )

    def journalled(self, app_message: Any, entry: int) -> None:
        """``app_message`` is durable as journal ``entry``: its broadcast drops the entry."""
        # amqtt's messages have __slots__: the entry is kept here, with the message itself, so
        # its id() cannot be reused before the broadcast takes it
        self._journalled[id(app_message)] = (app_message, entry)

    async def journal(self, row: JournalRow) -> int | None:
        """Journal ``row`` with the others of this loop pass; its entry once committed (None
        without a store)."""
        waiter = self.journal_soon(row)
        return None if waiter is None else await waiter

    def journal_soon(self, row: JournalRow) -> asyncio.Future[int] | None:
        """:meth:`journal` without waiting: the future of ``row``'s entry (None without a
        store)."""
        store = self._store
        if store is None:
            return None
        if self._group is None:
            self._group = GroupCommit(store.journal_add_many, store.journal_done)
        return self._group.add(row)

    def _journal_done(self, entry: int | None) -> None:
        if entry is not None and self._store is not None:
            self._store.journal_done(entry)

    async def _broadcast_message(
        self,
        session: Session | None,
        topic: str | None,
        data: bytes | bytearray | None,
        force_qos: int | None = None,
        *,
        retain: bool = False,
        journal: int | None = None,
    ) -> None:
        broadcast: dict[str, Any] = {
            "session": session,
            "topic": topic,
            "data": data,
            "retain": retain,
            "journal": journal,
        }
        if force_qos is not None:
            broadcast["qos"] = force_qos
        await self._broadcast_queue.put(broadcast)

    def _journal_when_acked(self, journal: int, durable: list[asyncio.Future[Any]]) -> None:
        """Drop the journal entry once every persistent session acknowledged the message
        (each delivery's end is counted by a callback: no task waits for them).

        An unacknowledged one stays in flight in memory only, so the entry stays too: a crash
        then broadcasts it again (a duplicate for those that had it), never loses it.
        """
        left = [len(durable), 0]  # deliveries still flying, deliveries that failed

        def ended(task: asyncio.Future[Any]) -> None:
            if task.cancelled() or task.exception() is not None:
                left[1] += 1
            left[0] -= 1
            if left[0] == 0 and not left[1]:
                self._journal_done(journal)

        for task in durable:
            task.add_done_callback(ended)
