"""The connection loop: connect, restore, receive; on loss reconnect after a capped, jittered
back-off.

Each connection is one aiomqtt client (MQTT 3.1.1, ``TCP_NODELAY``, manual acknowledgement,
the read buffer of :mod:`~fogmesh.bus._socket_drain`). Once connected, the loop subscribes every
reply topic and filter, flushes the outbox in order, marks the bus ready, runs the on-connect
callbacks, pings every half keepalive (:mod:`~fogmesh.bus._keepalive`) and dispatches what
arrives until the connection is lost. The back-off starts afresh after a connection that was
up; a clustered broker's members are dialled in turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, NoReturn

import aiomqtt
import structlog

from fogmesh.bus import _paho, _paho_wire
from fogmesh.bus._backoff import backoff_delay
from fogmesh.bus._config import Will
from fogmesh.bus._keepalive import early_pings
from fogmesh.bus._publisher import Publisher
from fogmesh.bus._socket_drain import drain_reads
from fogmesh.bus._state import BusState
from fogmesh.bus._subscriptions import Subscriptions

if TYPE_CHECKING:
    from fogmesh.bus._client import Bus

__all__ = ["RECEIVE_BURST", "ConnectCallback", "Connection"]

log = structlog.get_logger("fogmesh.bus")

RECEIVE_BURST = 256
"""Messages dispatched from aiomqtt's queue before the receive loop lets other tasks run."""

ConnectCallback = Callable[["Bus"], Coroutine[Any, Any, None]]


class Connection:
    """One bus's connection loop, and what it counts."""

    __slots__ = (
        "_bus",
        "_on_connect",
        "_publisher",
        "_state",
        "_subscriptions",
        "_turn",
        "_will",
        "connects",
        "pings_sent",
    )

    def __init__(
        self,
        bus: Bus,
        state: BusState,
        will: Will | None,
        subscriptions: Subscriptions,
        publisher: Publisher,
    ) -> None:
        self._bus = bus  # what the on-connect callbacks get
        self._state = state
        self._will = will
        self._subscriptions = subscriptions
        self._publisher = publisher
        self._on_connect: list[ConnectCallback] = []
        self._turn = 0  # which of config.endpoint() the next connection dials
        self.connects = 0
        """Connections that came up (subscriptions restored, outbox flushed)."""
        self.pings_sent = [0]  # early_pings' count
        """PINGREQs sent at half the keepalive while idle (a one-item list the pinger counts)."""

    def on_connect(self, callback: ConnectCallback) -> None:
        """Call ``callback(bus)`` after each (re)connect, once subscriptions are restored."""
        self._on_connect.append(callback)

    async def run(self) -> None:
        """Connect, serve, and reconnect after a back-off, until cancelled."""
        config = self._state.config
        attempt = 0
        while True:
            connects_before = self.connects
            try:
                await self._connect_once()
            except aiomqtt.MqttError as exc:
                log.info("bus connection lost", error=str(exc), host=config.host, port=config.port)
            except TimeoutError:
                log.info("bus connect timed out", host=config.host, port=config.port)
            if self.connects > connects_before:
                attempt = 0  # it was up: the next outage starts the back-off afresh
            self._turn += 1  # a clustered broker: the next member (a no-op with one address)
            delay = backoff_delay(attempt, base=config.reconnect_base, cap=config.reconnect_cap)
            attempt += 1
            await asyncio.sleep(delay)

    def _make_client(self) -> aiomqtt.Client:
        cfg = self._state.config
        will = None
        if self._will is not None:
            will = aiomqtt.Will(
                self._will.topic,
                self._will.message.model_dump_json().encode(),
                qos=self._will.qos,
                retain=self._will.retain,
            )
        host, port = cfg.endpoint(self._turn)
        client = aiomqtt.Client(
            host,
            port,
            username=cfg.username,
            password=cfg.password,
            identifier=cfg.client_id,
            clean_session=cfg.clean_session,
            keepalive=cfg.keepalive,
            will=will,
            timeout=cfg.timeout,
            tls_context=cfg.tls,
            transport="websockets" if cfg.transport == "websockets" else "tcp",
            websocket_path=cfg.websocket_path,
            # Request / reply is latency-bound: Nagle plus delayed ACKs costs ~40 ms a hop.
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
        )
        _paho.set_manual_ack(client)  # PUBACK after handling (``_acks``)
        drain_reads(_paho.paho_of(client))  # every whole packet of a wake-up, one recv
        _paho_wire.write_in_pass(client)  # what a loop pass queued, written in that pass
        return client

    async def _connect_once(self) -> None:
        state = self._state
        client = self._make_client()
        watchdog: asyncio.TimerHandle | None = None
        try:
            async with client:
                state.client = client
                try:
                    await self._serve(client)
                finally:
                    state.ready.clear()
                    state.client = None
                    watchdog = self._bound_disconnect(client)
        finally:
            if watchdog is not None:
                watchdog.cancel()

    def _bound_disconnect(self, client: aiomqtt.Client) -> asyncio.TimerHandle:
        """Give leaving ``client`` at most half of ``config.timeout`` seconds.

        aiomqtt's exit waits without a deadline until its DISCONNECT is written, and a broker
        that has stopped reading this connection (its socket buffer full) would hold the bus,
        and whoever closes it, forever. Past the deadline the socket is closed and the wait ends.
        """
        config = self._state.config

        def force() -> None:
            disconnected = _paho.disconnected(client)
            if disconnected.done():
                return
            log.warning(
                "broker did not take the disconnect; closing the connection",
                host=config.host,
                port=config.port,
            )
            with contextlib.suppress(Exception):
                _paho.close_socket(client)
            disconnected.set_result(None)

        # before aiomqtt's own wait gives up (at config.timeout, raising MqttError in place of
        # the cancellation that is closing the bus)
        return asyncio.get_running_loop().call_later(config.timeout / 2, force)

    async def _serve(self, client: aiomqtt.Client) -> None:
        """Restore, announce and receive on one live connection."""
        state = self._state
        await self._subscriptions.restore(client)
        await self._publisher.flush_outbox(client)
        self.connects += 1
        state.ready.set()
        log.debug(
            "bus connected",
            host=state.config.host,
            port=state.config.port,
            connects=self.connects,
        )
        for callback in self._on_connect:
            state.spawn(callback(self._bus))
        pinger = asyncio.create_task(
            early_pings(_paho.paho_of(client), state.config.keepalive, self.pings_sent)
        )
        try:
            await self._receive(client)
        finally:
            pinger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pinger

    async def _receive(self, client: aiomqtt.Client) -> None:
        """Dispatch ``client``'s messages until it disconnects (then raise its MqttError).

        aiomqtt's iterator makes a task and an ``asyncio.wait`` for every message; the bus
        awaits the incoming queue itself instead, and aiomqtt's disconnect future puts a marker
        at the queue's end, so the loop wakes when the connection goes as when a message comes.
        After every ``RECEIVE_BURST`` messages the loop yields, so the handlers get their turn
        in a flood; a disconnect seen then, or with nothing queued, ends it as the iterator did.
        """
        queue: asyncio.Queue[Any] = _paho.incoming(client)
        disconnected = _paho.disconnected(client)
        disconnected.add_done_callback(lambda _: _put_gone(queue))
        dispatch = self._subscriptions.dispatch
        burst = 0
        while True:
            if burst >= RECEIVE_BURST:
                burst = 0
                await asyncio.sleep(0)
                if disconnected.done():
                    _raise_gone(disconnected)
            if queue.empty():
                if disconnected.done():
                    _raise_gone(disconnected)
                message = await queue.get()
            else:
                message = queue.get_nowait()
                burst += 1
            if message is _GONE:
                _raise_gone(disconnected)
            dispatch(client, message)


_GONE = object()
"""The marker put after a lost connection's last message."""


def _put_gone(queue: asyncio.Queue[Any]) -> None:
    with contextlib.suppress(asyncio.QueueFull):  # a full queue is drained, then checked
        queue.put_nowait(_GONE)


def _raise_gone(disconnected: asyncio.Future[None]) -> NoReturn:
    """Raise what aiomqtt's message iterator raises when its connection is gone."""
    raise aiomqtt.MqttError("Disconnected during message iteration") from (disconnected.exception())
