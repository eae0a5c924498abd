"""The embedded broker: amqtt with fogmesh's plugins, split horizon and bridge-friendly delivery.

Three amqtt behaviours are changed by overriding small methods of :class:`amqtt.broker.Broker`
(amqtt is pinned to 0.12, whose internals these overrides follow):

* split horizon: a message published by a bridge client (client id starting with
  :data:`BRIDGE_PREFIX`) is never handed back to the same client, and, when the broker's
  ``split_horizon`` is on, to no other bridge client either. MQTT 3.1.1 has no no-local flag;
  this is what keeps a cycle of ``both`` links from circulating a message;
* retain as published: bridge clients receive the publisher's retain flag, so retained
  messages stay retained on the far side (plain clients get 0, as MQTT 3.1.1 requires);
* messages queued for an offline session are delivered with retain=0 (amqtt sets 1), and
  retained messages are replayed on reconnect only for the client's own subscriptions (amqtt
  replays those of every client on the broker);
* nothing acknowledged is dropped when its publisher disconnects: amqtt PUBACKs an incoming
  QoS 1 message as soon as it is in the session's ``delivered_message_queue`` and broadcasts it
  later, one by one, from ``_client_message_loop``; on DISCONNECT (or a lost connection) that
  loop stopped and whatever was still queued, already acknowledged, was silently discarded. A
  burst of publishes followed by a disconnect lost every message the broadcast had not caught
  up with. The loop now broadcasts the whole queue before it handles the disconnect;
* a session taken over by a new connection of the same client (a link reconnecting after a
  silent WAN cut, while the broker still counts the old connection as live) stays connected:
  amqtt let the old connection's teardown mark the shared session disconnected (and publish
  its will) after the new connection was up, so everything published for it afterwards went
  to its offline queue until some later reconnect. The old connection now just stops; the
  session keeps its new connection, its queue and its in-flight messages, and gets them at
  once. In-flight messages whose connection went away are resent on the current one
  (:func:`qos1fix.resend_orphans`). Retained replays on (re)connect iterate a copy of the
  subscription table (amqtt iterated the live dict across awaits: ``RuntimeError: dictionary
  changed size during iteration`` when another client subscribed meanwhile, which killed the
  connection's handling while its socket stayed open);
* an incoming QoS 1 message is acknowledged only once it is durable: it is written to the
  persistence plugin's inbound journal before the PUBACK (:meth:`MeshBroker.journal_incoming`,
  called from qos1fix), and deleted from it once it was broadcast, i.e. stored for every offline
  persistent session and acknowledged by every connected persistent one. A broker that dies in
  between broadcasts the journal again when it starts (at-least-once, never lost).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from pathlib import Path
from typing import Any
from weakref import WeakSet

from amqtt.broker import Broker, RetainedApplicationMessage
from amqtt.contexts import Action
from amqtt.errors import BrokerError
from amqtt.events import BrokerEvents
from amqtt.mqtt.disconnect import DisconnectPacket
from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler
from amqtt.session import OutgoingApplicationMessage, Session
from transitions import MachineError

from fogmesh.broker import qos1fix
from fogmesh.broker.config import BrokerSpec
from fogmesh.broker.persistence import SqlitePersistencePlugin

__all__ = ["BRIDGE_PREFIX", "MeshBroker", "amqtt_config"]

log = logging.getLogger(__name__)
BRIDGE_PREFIX = "fmb-"
"""Client ids of bridge links start with this."""
ORPHAN_SWEEP = 5.0
"""Seconds between looks for in-flight messages that lost their connection (see qos1fix)."""


def amqtt_config(name: str, spec: BrokerSpec) -> dict[str, Any]:
    """The amqtt configuration dict for broker ``name`` of the mesh."""
    listeners: dict[str, Any] = {}
    for i, lst in enumerate(spec.listeners):
        entry: dict[str, Any] = {"type": lst.type, "bind": f"{lst.host}:{lst.port}"}
        if lst.tls is not None:
            entry.update(ssl=True, certfile=str(lst.tls.certfile), keyfile=str(lst.tls.keyfile))
            if lst.tls.cafile:
                entry["cafile"] = str(lst.tls.cafile)
        # amqtt requires a listener called "default"; the first one takes that name
        listeners["default" if i == 0 else lst.name] = entry
    data_dir = spec.data_dir or Path(f"./fogmesh-{name}")
    spec_json = spec.model_dump_json()
    return {
        "listeners": listeners,
        "session_expiry_interval": spec.session_expiry,
        "plugins": {
            "fogmesh.broker.plugins.MeshAuthPlugin": {"spec_json": spec_json},
            "fogmesh.broker.plugins.MeshAclPlugin": {"spec_json": spec_json},
            "fogmesh.broker.persistence.SqlitePersistencePlugin": {
                "path": str(data_dir / "broker.sqlite"),
                "session_expiry": spec.session_expiry,
            },
        },
    }


def _close_idle(handler: Any) -> None:
    """amqtt's broker never acted on a read timeout; MQTT 3.1.1 (3.1.2.10) says disconnect.

    The read timeout is 1.5 keepalive periods (:meth:`MeshBroker._initialize_client_session`)
    without any packet: the connection is closed as lost, so its will (a link's ``down``) is
    published, also when a silent partition left the socket open.
    """
    session = handler.session
    log.info(
        "%s: nothing received for 1.5 keepalive periods: closing", session and session.client_id
    )
    task = asyncio.ensure_future(handler.handle_connection_closed())
    _closing.add(task)
    task.add_done_callback(_closing.discard)


_closing: set[asyncio.Task[Any]] = set()


def _is_bridge(session: Session | None) -> bool:
    return bool(session and session.client_id and session.client_id.startswith(BRIDGE_PREFIX))


class MeshBroker(Broker):  # type: ignore[misc]
    """amqtt's broker with split horizon and bridge-friendly retained handling."""

    def __init__(self, config: dict[str, Any], *, split_horizon: bool = True) -> None:
        """Build the broker; ``split_horizon`` as in :class:`BrokerSpec`."""
        qos1fix.install()
        BrokerProtocolHandler.handle_read_timeout = _close_idle
        super().__init__(config)
        self.split_horizon = split_horizon
        # handlers whose session a newer connection of the same client took over
        self._superseded: WeakSet[Any] = WeakSet()
        self._deliveries: set[asyncio.Task[Any]] = set()
        self._journalled: dict[int, tuple[Any, int]] = {}
        self._store: SqlitePersistencePlugin | None = self.plugins_manager.get_plugin(
            SqlitePersistencePlugin.__name__
        )

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

    async def _initialize_client_session(
        self, reader: Any, writer: Any, remote_address: str, remote_port: int
    ) -> tuple[Any, Session]:
        handler, session = await super()._initialize_client_session(
            reader, writer, remote_address, remote_port
        )
        if session.keep_alive > 0:  # MQTT 3.1.1 3.1.2.10: one and a half keepalive periods
            session.keep_alive += (session.keep_alive + 1) // 2
        return handler, session

    async def _handle_client_session(  # noqa: PLR0917 (amqtt's signature)
        self,
        reader: Any,
        writer: Any,
        client_session: Session,
        handler: Any,
        server: Any,
        listener_name: str,
    ) -> None:
        # amqtt 0.12's method, except for the take-over (the old connection is marked
        # superseded before anything awaits, so its teardown leaves the session alone) and the
        # retained replay (the client's own filters, from a copy of the subscription table).
        listener = self.listeners_config[listener_name]
        authenticated = await self._authenticate(client_session, listener)
        client_id = client_session.client_id
        if client_id is None:
            raise BrokerError("client id was not set")
        while True:
            if client_session.transitions.is_connected():
                await self._take_over(client_id)
                break
            try:
                client_session.transitions.connect()
                break
            except (MachineError, ValueError):
                log.warning("%s is reconnecting too quickly, make it wait", client_id)
                await asyncio.sleep(1)
        handler.attach(client_session, reader, writer)
        self._sessions[client_id] = (client_session, handler)
        await handler.mqtt_connack_authorize(authenticated)
        if not authenticated:
            await writer.close()
            return
        await self.plugins_manager.fire_event(
            BrokerEvents.CLIENT_CONNECTED, client_id=client_id, client_session=client_session
        )
        await handler.start()  # resends what was in flight for the session (amqtt)
        await self._publish_session_retained_messages(client_session)
        own = [
            (topic_filter, qos)
            for topic_filter, subscribers in list(self._subscriptions.items())
            for session, qos in list(subscribers)
            if session.client_id == client_id
        ]
        for subscription in own:
            await self._publish_retained_messages_for_subscription(subscription, client_session)
        await self._client_message_loop(client_session, handler)

    async def _take_over(self, client_id: str) -> None:
        """Close the old connection of a client that connected again while still connected."""
        _, old = self._sessions[client_id]
        log.warning("%s is already connected: its new connection takes over", client_id)
        # before any await: the old loop may handle its disconnect at any point from here on
        self._superseded.add(old)
        await old.handle_connection_closed()
        await self._stop_handler(old)

    async def _handle_disconnect(
        self, client_session: Session, handler: Any, disconnect_waiter: asyncio.Future[Any]
    ) -> None:
        if handler in self._superseded:
            # a newer connection took this session over: no will, no disconnect event, and
            # the session stays connected (it is, on that connection)
            self._superseded.discard(handler)
            await self._stop_handler(handler)
            log.info("%s: old connection closed after a take-over", client_session.client_id)
            return
        # amqtt 0.12's, except that the will keeps its retain flag on its way (a bridge
        # carries it retained to the far broker; amqtt broadcast it as a plain message)
        result = disconnect_waiter.result()
        if not isinstance(result, DisconnectPacket) and client_session.will_flag:
            topic, data = client_session.will_topic, client_session.will_message
            retain = bool(client_session.will_retain)
            if retain:
                await self.retain_message(client_session, topic, data, client_session.will_qos)
            await self._broadcast_message(
                client_session, topic, data, client_session.will_qos, retain=retain
            )
        await self._stop_handler(handler)
        client_session.transitions.disconnect()
        await self.plugins_manager.fire_event(
            BrokerEvents.CLIENT_DISCONNECTED,
            client_id=client_session.client_id,
            client_session=client_session,
        )

    async def _client_message_loop(self, client_session: Session, handler: Any) -> None:
        # amqtt 0.12's loop, except that a disconnect is handled only after every message the
        # broker already acknowledged has been broadcast, in order, and before the will; amqtt
        # handled the disconnect first and dropped the rest. Waiters are checked with done(),
        # not membership in asyncio.wait's result: one may finish after that set was taken.
        disconnect_waiter = asyncio.ensure_future(handler.wait_disconnect())
        subscribe_waiter = asyncio.ensure_future(handler.get_next_pending_subscription())
        unsubscribe_waiter = asyncio.ensure_future(handler.get_next_pending_unsubscription())
        wait_deliver = asyncio.ensure_future(handler.mqtt_deliver_next_message())
        sweep = asyncio.ensure_future(asyncio.sleep(ORPHAN_SWEEP))
        try:
            while True:
                await asyncio.wait(
                    [disconnect_waiter, subscribe_waiter, unsubscribe_waiter, wait_deliver, sweep],
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if sweep.done():
                    if n := qos1fix.resend_orphans(handler):
                        log.info("%s: resent %d in-flight messages", client_session.client_id, n)
                    sweep = asyncio.ensure_future(asyncio.sleep(ORPHAN_SWEEP))
                if subscribe_waiter.done():
                    await self._handle_subscription(client_session, handler, subscribe_waiter)
                    subscribe_waiter = asyncio.ensure_future(
                        handler.get_next_pending_subscription()
                    )
                if unsubscribe_waiter.done():
                    await self._handle_unsubscription(client_session, handler, unsubscribe_waiter)
                    unsubscribe_waiter = asyncio.ensure_future(
                        handler.get_next_pending_unsubscription()
                    )
                if wait_deliver.done():
                    if not await self._handle_message_delivery(
                        client_session, handler, wait_deliver
                    ):
                        break
                    wait_deliver = asyncio.ensure_future(handler.mqtt_deliver_next_message())
                if disconnect_waiter.done():
                    if await self._drain_acknowledged(client_session, handler, wait_deliver):
                        await self._handle_disconnect(client_session, handler, disconnect_waiter)
                    break
        except asyncio.CancelledError:
            log.debug("client loop of %s cancelled", client_session.client_id)
        finally:
            pending = [disconnect_waiter, subscribe_waiter, unsubscribe_waiter, wait_deliver, sweep]
            for waiter in pending:
                waiter.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def _drain_acknowledged(
        self, client_session: Session, handler: Any, wait_deliver: asyncio.Future[Any]
    ) -> bool:
        """Broadcast what ``client_session`` published and was acked but not yet delivered.

        ``wait_deliver`` (the pending ``mqtt_deliver_next_message``) is stopped first; if it
        took a message from the queue before it stopped, that one goes first. False if the
        session must be closed (an invalid topic), as in amqtt's loop.
        """
        wait_deliver.cancel()  # amqtt's mqtt_deliver_next_message returns None when cancelled
        await asyncio.wait([wait_deliver])
        taken = (
            not wait_deliver.cancelled()
            and wait_deliver.exception() is None
            and wait_deliver.result() is not None
        )
        if taken and not await self._handle_message_delivery(client_session, handler, wait_deliver):
            return False
        queue = client_session.delivered_message_queue
        while not queue.empty():
            item: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            item.set_result(queue.get_nowait())
            if not await self._handle_message_delivery(client_session, handler, item):
                return False
        return True

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
        await self.plugins_manager.fire_event(
            BrokerEvents.MESSAGE_BROADCAST, client_id=client_session.client_id, message=app_message
        )
        retain = bool(app_message.publish_packet and app_message.publish_packet.retain_flag)
        if retain:  # stored before the broadcast can finish and drop the journal entry
            await self.retain_message(client_session, topic, app_message.data, app_message.qos)
        await self._broadcast_message(
            client_session, topic, app_message.data, retain=retain, journal=journal
        )
        return True

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

    async def _run_broadcast(
        self, running_tasks: deque[asyncio.Task[OutgoingApplicationMessage]]
    ) -> None:
        broadcast = await self._broadcast_queue.get()
        topic = broadcast["topic"]
        source = broadcast["session"]
        durable: list[asyncio.Task[Any]] = []  # deliveries the journal entry waits for
        for k_filter, subscriptions in list(self._subscriptions.items()):
            if not self._matches(topic, k_filter):
                continue
            for target_session, sub_qos in list(subscriptions):
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
                    task = asyncio.ensure_future(
                        handler.mqtt_publish(topic, broadcast["data"], qos, retain=retain)
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
        finish = asyncio.ensure_future(self._journal_when_acked(journal, durable))
        self._deliveries.add(finish)
        finish.add_done_callback(self._deliveries.discard)

    async def _journal_when_acked(self, journal: int, durable: list[asyncio.Task[Any]]) -> None:
        """Drop the journal entry once every persistent session acknowledged the message.

        An unacknowledged one stays in flight in memory only, so the entry stays too: a crash
        then broadcasts it again (a duplicate for those that had it), never loses it.
        """
        results = await asyncio.gather(*durable, return_exceptions=True)
        if not any(isinstance(r, BaseException) for r in results):
            self._journal_done(journal)

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
        if row is not None and store is not None and qos:
            publish = qos1fix.publish_tracked(
                handler, topic, data, qos, retain=retain, on_ack=lambda: store.queued_done(row)
            )
        else:
            publish = handler.mqtt_publish(topic, data, qos, retain=retain)
        task = asyncio.ensure_future(publish)
        self._deliveries.add(task)
        task.add_done_callback(self._delivered)

    def _delivered(self, task: asyncio.Task[Any]) -> None:
        self._deliveries.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            # an unacknowledged QoS 1 message stays in flight (qos1fix); nothing is lost here
            log.debug("delivery ended without PUBACK: %r", exc)

    async def _publish_session_retained_messages(self, session: Session) -> None:
        # Queued while offline: these are ordinary messages, so retain=0 (amqtt sends 1).
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
