"""The embedded broker's inbound journal: an incoming QoS 1 message is durable before its PUBACK.

qos1fix calls :meth:`InboundJournal.journal_incoming` before amqtt acknowledges a message; the
entry is deleted once the message was broadcast, i.e. stored for every offline persistent
session and acknowledged by every connected persistent one. A broker that dies in between
broadcasts the journal again when it starts (at-least-once, never lost).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from amqtt.broker import Broker
from amqtt.session import Session

from fogmesh.broker.persistence import SqlitePersistencePlugin

__all__ = ["InboundJournal"]

log = logging.getLogger(__name__)


class InboundJournal(Broker):  # type: ignore[misc]
    """The journal half of :class:`fogmesh.broker.server.MeshBroker`."""

    _store: SqlitePersistencePlugin | None
    _journalled: dict[int, tuple[Any, int]]

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

    def journal_incoming(self, session: Session | None, app_message: Any) -> None:
        """Make an incoming QoS 1 message durable before it is acknowledged (qos1fix calls this)."""
        if self._store is None or not app_message.topic:
            return
        packet = app_message.publish_packet
        # amqtt's messages have __slots__: the entry is kept here, with the message itself, so
        # its id() cannot be reused before the broadcast takes it
        self._journalled[id(app_message)] = (
            app_message,
            self._store.journal_add(
                session.client_id if session is not None else None,
                app_message.topic,
                bytes(app_message.data or b""),
                int(app_message.qos or 0),
                retain=bool(packet is not None and packet.retain_flag),
            ),
        )

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

    def _journal_when_acked(self, journal: int, durable: list[asyncio.Task[Any]]) -> None:
        """Drop the journal entry once every persistent session acknowledged the message
        (each delivery's end is counted by a callback: no task waits for them).

        An unacknowledged one stays in flight in memory only, so the entry stays too: a crash
        then broadcasts it again (a duplicate for those that had it), never loses it.
        """
        left = [len(durable), 0]  # deliveries still flying, deliveries that failed

        def ended(task: asyncio.Task[Any]) -> None:
            if task.cancelled() or task.exception() is not None:
                left[1] += 1
            left[0] -= 1
            if left[0] == 0 and not left[1]:
                self._journal_done(journal)

        for task in durable:
            task.add_done_callback(ended)
