"""The embedded broker's connection handling: take-over, disconnect, the per-client loop.

A session taken over by a new connection of the same client (a link reconnecting after a
silent WAN cut, while the broker still counts the old connection as live) stays connected: the
old connection just stops, and the session keeps its new connection, its queue and its
in-flight messages. A disconnect is handled only once everything the client published and was
acknowledged has been broadcast. An idle connection is closed after 1.5 keepalive periods.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from weakref import WeakSet

from amqtt.broker import Broker
from amqtt.errors import AMQTTError, BrokerError, MQTTError, NoDataError
from amqtt.events import BrokerEvents
from amqtt.mqtt.connack import CONNECTION_ACCEPTED, ConnackPacket
from amqtt.mqtt.disconnect import DisconnectPacket
from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler
from amqtt.session import Session
from amqtt.utils import format_client_message, gen_client_id
from transitions import MachineError

from fogmesh.broker import outflight, qos1fix

__all__ = ["ORPHAN_SWEEP", "QUEUED_RUN", "SessionHandling", "close_idle"]

log = logging.getLogger(__name__)
ORPHAN_SWEEP = 5.0
"""Seconds between looks for in-flight messages that lost their connection (see qos1fix)."""
QUEUED_RUN = 64
"""Acknowledged messages of one client broadcast in a row, without a task and an
``asyncio.wait`` each, before its loop waits again (and lets others run)."""


def close_idle(handler: Any) -> None:
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


class SessionHandling(Broker):  # type: ignore[misc]
    """The connection half of :class:`fogmesh.broker.server.MeshBroker`."""

    # handlers whose session a newer connection of the same client took over
    _superseded: WeakSet[Any]
    # handlers whose CONNECT was authenticated before their session was touched
    _admitted: WeakSet[Any]

    async def _initialize_client_session(
        self, reader: Any, writer: Any, remote_address: str, remote_port: int
    ) -> tuple[Any, Session]:
        # amqtt 0.12's method, except that a connection is authenticated (credentials and
        # client-id ownership) before the session of the client id it names is looked up: a
        # refused CONNECT must not delete, rewrite or take over another client's live session
        # (any account that knew a client id could knock that client offline).
        peer = format_client_message(address=remote_address, port=remote_port)
        try:
            handler, session = await BrokerProtocolHandler.init_from_connect(
                reader, writer, self.plugins_manager
            )
        except AMQTTError as exc:
            log.warning("%s: the first packet is no CONNECT: %s", peer, exc)
            raise AMQTTError(exc) from exc
        except MQTTError as exc:
            log.warning("%s: invalid connection", peer)
            await writer.close()
            raise MQTTError(exc) from exc
        except NoDataError as exc:
            log.info("%s: closed before sending CONNECT", peer)
            raise AMQTTError(exc) from exc
        if not await self._authenticate(session, None):
            handler.attach(session, reader, writer)
            await handler.mqtt_connack_authorize(False)
            await writer.close()
            raise AMQTTError(f"{peer}: CONNECT as {session.client_id!r} refused")
        self._admitted.add(handler)
        if session.clean_session:
            if session.client_id:
                await self._delete_session(session.client_id)
            else:
                session.client_id = gen_client_id()
            session.parent = 0
        elif session.client_id in self._sessions:
            # the session lives on; the new connection brings its own will and credentials
            existing, _ = self._sessions[session.client_id]
            for name in (
                "will_flag", "will_message", "will_topic", "will_qos", "keep_alive",
                "username", "password",
            ):  # fmt: skip
                setattr(existing, name, getattr(session, name))
            session = existing
            session.parent = 1
        else:
            session.parent = 0
        delay = self.config.get("timeout-disconnect-delay", 0)
        if session.keep_alive > 0 and isinstance(delay, int):
            session.keep_alive += delay
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
        # admitted before its session was looked up (_initialize_client_session)
        authenticated = handler in self._admitted or await self._authenticate(
            client_session, listener
        )
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
        queue_sent = authenticated and outflight.writes_inline(handler)
        if queue_sent:
            # the CONNACK, the session's resends and its offline queue in this pass (none of
            # it awaits): the broadcast, which sees the session connected from here on, can
            # send it nothing newer before them
            connack = ConnackPacket.build(client_session.parent, CONNECTION_ACCEPTED)
            handler.writer.write(connack.to_bytes())
            qos1fix.resend_in_flight(handler)
            await self._publish_session_retained_messages(client_session)
        else:
            await handler.mqtt_connack_authorize(authenticated)
        if not authenticated:
            await writer.close()
            return
        await self.plugins_manager.fire_event(
            BrokerEvents.CLIENT_CONNECTED, client_id=client_id, client_session=client_session
        )
        await handler.start()  # resends what was in flight for the session (amqtt)
        if not queue_sent:
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
                    stop = (subscribe_waiter, unsubscribe_waiter, disconnect_waiter)
                    if not await self._deliver_burst(client_session, handler, wait_deliver, stop):
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
        return await self._deliver_queued(client_session, handler, (), None)

    async def _deliver_burst(
        self,
        client_session: Session,
        handler: Any,
        wait_deliver: asyncio.Future[Any],
        stop: tuple[asyncio.Future[Any], ...],
    ) -> bool:
        """The message ``wait_deliver`` took, then up to :data:`QUEUED_RUN` more already
        queued, unless one of ``stop`` (a (un)subscribe, the disconnect) came first."""
        if not await self._handle_message_delivery(client_session, handler, wait_deliver):
            return False
        return await self._deliver_queued(client_session, handler, stop, QUEUED_RUN)

    async def _deliver_queued(
        self,
        client_session: Session,
        handler: Any,
        stop: tuple[asyncio.Future[Any], ...],
        limit: int | None,
    ) -> bool:
        """Broadcast what is in ``client_session``'s queue of acknowledged messages, in order,
        up to ``limit`` (None: all), until one of ``stop`` is done. False if the session must
        be closed (an invalid topic), as in amqtt's loop."""
        queue = client_session.delivered_message_queue
        loop = asyncio.get_running_loop()
        taken = 0
        while not queue.empty() and (limit is None or taken < limit):
            if any(waiter.done() for waiter in stop):
                break
            item: asyncio.Future[Any] = loop.create_future()
            item.set_result(queue.get_nowait())
            taken += 1
            if not await self._handle_message_delivery(client_session, handler, item):
                return False
        return True
