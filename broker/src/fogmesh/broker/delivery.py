"""The embedded broker's delivery path: broadcast, split horizon, queue and retained replay.

Split horizon keeps a bridge client's messages from going back to it (or, with
``split_horizon``, to any bridge client); bridge clients receive the publisher's retain flag;
messages queued for an offline session go out with retain=0, each queue row deleted from disk
only on its PUBACK; retained messages are replayed on reconnect only for the client's own
subscriptions. Deliveries are held tasks, never awaited by the client's read loop. A shared
subscription (``$share/{group}/{filter}``) delivers to one member (:mod:`fogmesh.broker.shared`).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from functools import partial
from typing import Any

from amqtt.broker import Broker, RetainedApplicationMessage
from amqtt.contexts import Action
from amqtt.events import BrokerEvents
from amqtt.session import Session

from fogmesh.broker import qos1_inline
from fogmesh.broker.join import JOIN_TOPIC_PREFIX
from fogmesh.broker.persistence import SqlitePersistencePlugin
from fogmesh.broker.plugins import MeshAclPlugin
from fogmesh.broker.shared import pick_member, share_key, split_shared, unshared

__all__ = ["BRIDGE_PREFIX", "BROADCAST_EVENT_TOPICS", "Delivery"]

log = logging.getLogger(__name__)
BRIDGE_PREFIX = "fmb-"
"""Client ids of bridge links start with this."""
BROADCAST_EVENT_TOPICS = (JOIN_TOPIC_PREFIX,)
"""The topics (prefixes) whose broadcast plugins are told of (``MESSAGE_BROADCAST``): the join
requests :class:`fogmesh.broker.plugins.MeshAuthPlugin` redeems. amqtt told them of every
message, a task each."""


def _settle(task: asyncio.Future[Any]) -> None:
    """Take a finished delivery's outcome, as amqtt's loop does (a failure is logged)."""
    if task.cancelled():
        return
    if (exc := task.exception()) is not None:
        log.debug("delivery failed: %r", exc)


def _is_bridge(session: Session | None) -> bool:
    return bool(session and session.client_id and session.client_id.startswith(BRIDGE_PREFIX))


class Delivery(Broker):  # type: ignore[misc]
    """The delivery half of :class:`fogmesh.broker.server.MeshBroker`."""

    split_horizon: bool
    _store: SqlitePersistencePlugin | None
    _journalled: dict[int, tuple[Any, int]]
    _deliveries: set[asyncio.Future[Any]]

    async def _handle_message_delivery(
        self, client_session: Session, handler: Any, wait_deliver: asyncio.Future[Any]
    ) -> bool:
        # Same checks as amqtt 0.12's method; only the retain flag now travels with the broadcast.
        app_message = wait_deliver.result()
        await self.plugins_manager.fire_event(
            BrokerEvents.MESSAGE_RECEIVED, client_id=client_session.client_id, message=app_message
        )
        if app_message is None:
            return True
        journal = self._journalled.pop(id(app_message), (None, None))[1]
        topic = app_message.topic
        if not topic or "#" in topic or "+" in topic or topic.startswith("$"):
            log.warning("%s sent an invalid topic; closing", client_session.client_id)
            self._journal_done(journal)
            return False
        if not await self._topic_filtering(client_session, topic=topic, action=Action.PUBLISH):
            log.info("%s may not publish on %s", client_session.client_id, topic)
            self._journal_done(journal)
            return True
        if topic.startswith(BROADCAST_EVENT_TOPICS):
            await self.plugins_manager.fire_event(
                BrokerEvents.MESSAGE_BROADCAST,
                client_id=client_session.client_id,
                message=app_message,
            )
        retain = bool(app_message.publish_packet and app_message.publish_packet.retain_flag)
        if retain:  # stored before the broadcast can finish and drop the journal entry
            await self.retain_message(client_session, topic, app_message.data, app_message.qos)
        await self._broadcast_message(
            client_session, topic, app_message.data, retain=retain, journal=journal
        )
        return True

    async def _topic_filtering(self, session: Session, topic: str, action: Action) -> bool:
        """amqtt's check; when the mesh ACL is the only topic plugin, called directly."""
        manager = self.plugins_manager
        plugins = manager._topic_plugins
        if len(plugins) == 1 and isinstance(plugins[0], MeshAclPlugin):
            return not manager.is_topic_filtering_enabled() or plugins[0].allows(
                session, topic, action
            )
        return bool(await super()._topic_filtering(session, topic, action))

    async def retain_message(
        self,
        source_session: Session | None,
        topic_name: str | None,
        data: bytes | bytearray | None,
        qos: int | None = None,
    ) -> None:
        """amqtt's, but the plugins (persistence) are done when this returns."""
        if data and topic_name is not None:
            self._retained_messages[topic_name] = RetainedApplicationMessage(
                source_session, topic_name, data, qos
            )
            retained = self._retained_messages[topic_name]
        elif topic_name in self._retained_messages:
            retained = self._retained_messages.pop(topic_name)
            retained.data = b""
        else:
            return
        await self.plugins_manager.fire_event(
            BrokerEvents.RETAINED_MESSAGE, wait=True, client_id=None, retained_message=retained
        )

    async def _retain_broadcast_message(
        self, broadcast: dict[str, Any], qos: int, target_session: Session
    ) -> None:
        # amqtt's, but stored (persistence plugin) when this returns
        retained = RetainedApplicationMessage(
            broadcast["session"], broadcast["topic"], broadcast["data"], qos
        )
        await target_session.retained_messages.put(retained)
        await self.plugins_manager.fire_event(
            BrokerEvents.RETAINED_MESSAGE,
            wait=True,
            client_id=target_session.client_id,
            retained_message=retained,
        )

    def _skip(self, source: Session | None, target: Session) -> bool:
        """Split horizon: should a message from ``source`` not go to ``target``?"""
        if not _is_bridge(source) or not _is_bridge(target):
            return False
        assert source is not None
        return self.split_horizon or source.client_id == target.client_id

    async def _broadcast_loop(self) -> None:
        """amqtt 0.12's broadcast loop without a task and an ``asyncio.wait`` per message:
        a queued broadcast is taken at once, and only an empty queue is waited on (beside
        the shutdown, which ends the loop as amqtt's does)."""
        running = self._tasks_queue
        queue = self._broadcast_queue
        stop = self._broadcast_shutdown_waiter
        try:
            while not stop.done():
                while running and running[0].done():
                    _settle(running.popleft())
                if queue.empty():
                    getter = asyncio.ensure_future(queue.get())
                    await asyncio.wait([getter, stop], return_when=asyncio.FIRST_COMPLETED)
                    if not getter.done():
                        getter.cancel()
                        break
                    broadcast = getter.result()
                else:
                    broadcast = queue.get_nowait()
                try:
                    await self._broadcast_one(broadcast, running)
                except Exception:  # one bad broadcast must not stop every later one
                    log.exception("broadcast on %s failed", broadcast.get("topic"))
        finally:
            for task in running:
                if not task.done():
                    task.cancel()

    async def _run_broadcast(self, running_tasks: deque[asyncio.Future[Any]]) -> None:
        await self._broadcast_one(await self._broadcast_queue.get(), running_tasks)

    async def _broadcast_one(
        self,
        broadcast: dict[str, Any],
        running_tasks: deque[asyncio.Future[Any]],
    ) -> None:
        """Hand one broadcast to every matching session (split horizon, shared groups)."""
        topic = broadcast["topic"]
        source = broadcast["session"]
        durable: list[asyncio.Future[Any]] = []  # deliveries the journal entry waits for
        for k_filter, subscriptions in list(self._subscriptions.items()):
            if not self._matches(topic, unshared(k_filter)):
                continue
            targets = list(subscriptions)
            if split_shared(k_filter) is not None:  # one member of the group gets it
                key = share_key(topic, unshared(k_filter))
                targets = pick_member(key, targets, skip=lambda s: self._skip(source, s))
            for target_session, sub_qos in targets:
                if self._skip(source, target_session):
                    continue
                qos = broadcast.get("qos", sub_qos)
                if (
                    target_session.transitions.state != "connected"
                    and not target_session.clean_session
                    and qos in (1, 2)
                ):
                    await self._retain_broadcast_message(broadcast, qos, target_session)
                    continue
                if target_session.transitions.state != "connected":
                    continue
                handler = self._get_handler(target_session)
                if handler:
                    retain = bool(broadcast.get("retain")) and _is_bridge(target_session)
                    task = qos1_inline.deliver(
                        handler, topic, broadcast["data"], qos, retain=retain
                    )
                    running_tasks.append(task)
                    if qos and not target_session.clean_session:
                        durable.append(task)
        journal = broadcast.get("journal")
        if journal is None:
            return
        if not durable:
            self._journal_done(journal)
            return
        self._journal_when_acked(journal, durable)

    def _deliver(
        self,
        handler: Any,
        topic: str,
        data: bytes | bytearray,
        qos: int | None,
        *,
        retain: bool,
        row: int | None = None,
    ) -> None:
        """Publish to one client as a held task: its PUBACK is not waited for here.

        amqtt awaited these before reading the client's next packets; a client that acks only
        once it has subscribed and read (a bridge link) then stalled its own connection. A
        message from the session's offline queue names its ``row`` on disk, deleted only on
        the client's PUBACK (a crash before that delivers it again after the restart).
        """
        store = self._store
        on_ack = None
        if row is not None and store is not None and qos:
            on_ack = partial(store.queued_done, row)
        task = qos1_inline.deliver(handler, topic, data, qos, retain=retain, on_ack=on_ack)
        self._deliveries.add(task)
        task.add_done_callback(self._delivered)

    def _delivered(self, task: asyncio.Future[Any]) -> None:
        self._deliveries.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            # an unacknowledged QoS 1 message stays in flight (qos1fix); nothing is lost here
            log.debug("delivery ended without PUBACK: %r", exc)

    async def _publish_session_retained_messages(self, session: Session) -> None:
        # Queued while offline: these are ordinary messages, so retain=0 (amqtt sends 1).
        # Nothing here awaits: a reconnect sends the queue in the pass of its CONNACK (takeover).
        handler = self._get_handler(session)
        if handler is None:
            return
        while not session.retained_messages.empty():
            msg = session.retained_messages.get_nowait()
            row = None if self._store is None else self._store.take_queued_row(msg)
            self._deliver(handler, msg.topic, msg.data, msg.qos, retain=False, row=row)

    async def _publish_retained_messages_for_subscription(
        self, subscription: tuple[str, int], session: Session
    ) -> None:
        topic_filter = subscription[0]
        subscribers = self._subscriptions.get(topic_filter, [])
        mine = [q for s, q in subscribers if s.client_id == session.client_id]
        handler = self._get_handler(session)
        if not mine or handler is None:
            return  # amqtt 0.12 replays every client's filters on reconnect; only ours count
        qos = mine[0]
        for topic, retained in list(self._retained_messages.items()):
            # split horizon for retained messages too: a link is not handed back what it
            # brought (after a partition that copy is older than the far side's own value)
            if self._matches(topic, topic_filter) and not self._skip(
                retained.source_session, session
            ):
                qos_out = min(qos, retained.qos or qos)
                self._deliver(handler, topic, retained.data, qos_out, retain=True)
