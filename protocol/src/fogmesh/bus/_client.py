"""The bus client every fogmesh service talks through.

One :class:`Bus` owns one MQTT connection. ``async with Bus(...)`` starts a supervisor task
that runs a :class:`asyncio.TaskGroup` of named loops: the connection loop
(:mod:`~fogmesh.bus._connection`: connect, restore subscriptions, flush the outbox, receive; on
loss reconnect after a capped, jittered back-off) and one worker per subscription
(:mod:`~fogmesh.bus._subscriptions`: handlers of one subscription run in order; a slow handler
of one subscription does not hold up another). Every task the bus starts belongs to that group.
Leaving the block cancels the supervisor and awaits it, which disconnects cleanly.

The parts, one role each, share :class:`~fogmesh.bus._state.BusState`: publishing and the
outbox (:mod:`~fogmesh.bus._publisher`), request / reply (:mod:`~fogmesh.bus._requests`),
acknowledgement after handling (:mod:`~fogmesh.bus._acks`). paho's and aiomqtt's private
attributes are touched only in :mod:`~fogmesh.bus._paho`.

The receive path costs little per message: one socket read per wake-up serves every whole packet
it brought (:mod:`~fogmesh.bus._socket_drain`), messages already waiting are taken from
aiomqtt's queue directly, and which subscriptions a topic goes to is worked out once per topic
(:class:`~fogmesh.bus._matcher.FilterIndex`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from enum import Enum
from typing import Any, Self, TypeVar

from pydantic import BaseModel

from fogmesh.bus._acks import Acknowledger
from fogmesh.bus._config import BusConfig, Will
from fogmesh.bus._connection import ConnectCallback, Connection
from fogmesh.bus._outbox import Outbox
from fogmesh.bus._publisher import Publisher
from fogmesh.bus._requests import Requests
from fogmesh.bus._state import BusState
from fogmesh.bus._subscription import Delivery, Handler
from fogmesh.bus._subscriptions import Subscriptions
from fogmesh.protocol import BusError, Reply, Request

__all__ = ["Bus", "Handler"]

M = TypeVar("M", bound=BaseModel)
R = TypeVar("R", bound=Reply)


class _Lifecycle(Enum):
    UNOPENED = "unopened"
    OPENED = "opened"
    CLOSED = "closed"


class Bus:
    """A connection to the fogmesh bus: typed publish, typed subscriptions, request / reply."""

    def __init__(self, config: BusConfig, *, will: Will | None = None) -> None:
        self.config = config
        self._lifecycle = _Lifecycle.UNOPENED
        self._state = BusState(config)
        self._acks = Acknowledger(self._state)
        self._publisher = Publisher(self._state, Outbox(config.outbox_limit, config.outbox_policy))
        self._requests = Requests(self._state, self._publisher)
        self._subscriptions = Subscriptions(self, self._state, self._acks, self._requests)
        self._connection = Connection(self, self._state, will, self._subscriptions, self._publisher)
        self._supervisor: asyncio.Task[None] | None = None
        self._group_ready = asyncio.Event()
        self.reply_topic = self._requests.reply_topic
        """Where replies to this client's requests outside a tenant's API arrive."""

    # -- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._lifecycle is not _Lifecycle.UNOPENED:
            raise BusError(f"a Bus can be opened once; this one is {self._lifecycle.value}")
        self._lifecycle = _Lifecycle.OPENED
        self._supervisor = asyncio.create_task(
            self._supervise(), name=self._state.task_name("supervisor")
        )
        await self._group_ready.wait()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._lifecycle = _Lifecycle.CLOSED
        self._requests.close()
        if self._supervisor is not None:
            self._supervisor.cancel()
            try:
                await self._supervisor
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise  # the caller itself is being cancelled: let that through

    async def _supervise(self) -> None:
        state = self._state
        try:
            async with asyncio.TaskGroup() as group:
                state.group = group
                self._subscriptions.start_workers()
                state.start(self._connection.run(), name="connection_loop")
                self._group_ready.set()
        finally:
            state.group = None
            self._group_ready.set()

    @property
    def connected(self) -> bool:
        """True while connected, with subscriptions restored and the outbox flushed."""
        return self._state.ready.is_set()

    @property
    def connects(self) -> int:
        """Connections that came up since this bus started."""
        return self._connection.connects

    @property
    def dropped(self) -> int:
        """Messages the outbox dropped by its policy since this bus started."""
        return self._publisher.outbox.dropped

    @property
    def pings_sent(self) -> int:
        """PINGREQs sent at half the keepalive while idle (:mod:`~fogmesh.bus._keepalive`)."""
        return self._connection.pings_sent[0]

    @property
    def queued(self) -> int:
        """Messages waiting in the outbox for a connection."""
        return len(self._publisher.outbox)

    async def wait_connected(self, timeout: float | None = None) -> None:
        """Wait until connected; raise :class:`TimeoutError` after ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            await self._state.ready.wait()

    def on_connect(self, callback: ConnectCallback) -> None:
        """Call ``callback(bus)`` after each (re)connect, once subscriptions are restored."""
        self._connection.on_connect(callback)

    # -- subscriptions ---------------------------------------------------------------------

    def subscribe(
        self,
        topic_filter: str,
        model: type[M],
        handler: Handler[M],
        *,
        qos: int = 1,
        max_payload: int | None = None,
    ) -> None:
        """Deliver messages on ``topic_filter``, validated as ``model``, to ``handler``.

        Subscribing to a filter again replaces its handler; it never adds a second one.
        ``max_payload`` (bytes) overrides ``BusConfig.max_payload`` for this filter.
        """
        self._subscriptions.add(topic_filter, model, handler, qos, max_payload)

    def acknowledge(self, delivery: Delivery) -> None:
        """Send the PUBACK of a handled QoS 1 message, on the connection it came from.

        After a reconnect the broker sends an unacknowledged message again (the same packet id
        could name another message by then), so nothing is acknowledged across connections.
        """
        self._acks.acknowledge(delivery)

    # -- publishing ------------------------------------------------------------------------

    async def publish(
        self,
        topic: str,
        message: BaseModel,
        *,
        qos: int = 1,
        retain: bool = False,
        queue: bool = True,
    ) -> None:
        """Publish ``message`` as JSON. Returns once the broker has it (QoS 1) or it is queued.

        ``queue=False`` is for writers whose right to write may lapse while they are away (a
        lease holder): instead of waiting in the outbox, the message raises
        :class:`NotConnectedError` when it cannot be handed to the broker now.
        """
        await self._publisher.publish(topic, message, qos=qos, retain=retain, queue=queue)

    async def publish_raw(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False, queue: bool = True
    ) -> None:
        """Publish raw bytes (the apps' data plane); same delivery rules as :meth:`publish`."""
        await self._publisher.publish_raw(topic, payload, qos=qos, retain=retain, queue=queue)

    def publish_later(self, topic: str, message: BaseModel) -> None:
        """Publish ``message`` (QoS 1) in the background, for answers a worker must not wait
        on (a flooding tenant's refusals); dropped with a log line when too many are pending."""
        self._publisher.publish_later(topic, message)

    # -- request / reply -------------------------------------------------------------------

    async def request(
        self, topic: str, request: Request, reply_model: type[R], *, timeout: float = 5.0
    ) -> R:
        """Send ``request`` and return its reply as ``reply_model``.

        Raises :class:`RemoteError` when the service answers with an error, and
        :class:`RequestTimeout` when no answer comes within ``timeout`` seconds.
        """
        return await self._requests.request(topic, request, reply_model, timeout=timeout)

    # -- background work -------------------------------------------------------------------

    def _spawn(self, work: Coroutine[Any, Any, None], name: str = "background") -> bool:
        """Run ``work`` in the bus's TaskGroup (see :meth:`BusState.spawn`); False when not."""
        return self._state.spawn(work, name)
