"""The embedded broker's outgoing QoS 1 messages, from their PUBLISH to their PUBACK.

:func:`send` writes a message to its client and returns the future of its PUBACK. The message
sits in its session's in-flight table until that PUBACK comes (MQTT 3.1.1, 4.4: a session that
reconnects is sent it again), whichever connection of the session brings it; only then does it
leave the table, and its callback (:func:`track`) run.

A message is written in the pass that sent it when the connection's writes do not wait: its
writer is a :class:`fogmesh.broker.pass_writer.PassWriter` (the pass's packets leave in one
write), no plugin listens to sent packets, no write holds or waits for the connection's lock,
its transport is under its high-water mark and no earlier message of this module waits its
turn. Otherwise it is written by a task, through amqtt's ``_send_packet`` (its lock, its
``drain``), in turn: a connection's messages leave in the order sent. amqtt sent every message
from a task of its own, with a timer for its PUBACK; the pass's messages now cost no task, no
timer and no coroutine.

A PUBACK that has not come :data:`PUBACK_TIMEOUT` after its message was written is given up by
the broker's sweep (:func:`expire`, every few seconds): the future fails with
``TimeoutError``, the message stays in flight and the sweep sends it again
(:func:`fogmesh.broker.qos1fix.resend_orphans`). A connection that ends cancels its futures
(amqtt's ``stop``); their messages stay in flight for the next connection.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable
from functools import partial
from typing import Any

from amqtt.errors import AMQTTError
from amqtt.events import MQTTEvents

from fogmesh.broker.pass_writer import PassWriter

__all__ = ["PUBACK_TIMEOUT", "expire", "send", "settle", "track", "writes_inline"]

log = logging.getLogger(__name__)

PUBACK_TIMEOUT = 60.0
"""Seconds a written message waits for its PUBACK before it counts as orphaned and is resent.

amqtt gave up after 5 s; a busy link acknowledging a few thousand queued messages takes longer,
and each give-up became a resend (more load, duplicates)."""

# id(message) -> (message, callback): amqtt's messages have __slots__ and no weakref; the
# message is held here so its id() cannot be reused before its PUBACK pops the entry
_on_puback: dict[int, tuple[Any, Callable[[], None]]] = {}
# a written message's PUBACK future -> the loop time it was written
_written_at: dict[asyncio.Future[Any], float] = {}
# per connection: how many of its messages wait for their turn to be written (a task each)
_turns: weakref.WeakKeyDictionary[Any, list[int]] = weakref.WeakKeyDictionary()
_writing: set[asyncio.Task[None]] = set()


def track(app_message: Any, on_ack: Callable[[], None]) -> None:
    """Run ``on_ack`` when outgoing QoS 1 ``app_message`` is acknowledged, on whichever
    connection (a resend keeps it: it goes with the message)."""
    _on_puback[id(app_message)] = (app_message, on_ack)


def settle(app_message: Any) -> None:
    """``app_message`` left its session's in-flight table for good (acknowledged, or handed on
    to another broker, :mod:`fogmesh.broker.handoff`): run its callback."""
    if (tracked := _on_puback.pop(id(app_message), None)) is not None:
        tracked[1]()


def writes_inline(handler: Any) -> bool:
    """Whether ``handler``'s packets may be written without amqtt's ``_send_packet``: a
    :class:`PassWriter`, and no plugin told of each packet sent."""
    return isinstance(handler.writer, PassWriter) and (
        MQTTEvents.PACKET_SENT not in handler.plugins_manager._event_plugin_callbacks
    )


def _writes_now(handler: Any) -> bool:
    turn = _turns.get(handler)
    if (turn is not None and turn[0]) or not writes_inline(handler):
        return False
    lock = handler._write_lock
    if lock.locked() or lock._waiters:
        return False
    transport = handler.writer._writer.transport
    return not transport.is_closing() and (
        transport.get_write_buffer_size() < transport.get_write_buffer_limits()[1]
    )


def send(handler: Any, app_message: Any) -> asyncio.Future[Any]:
    """Send outgoing QoS 1 ``app_message`` (again, with DUP, if it was sent before) on
    ``handler``'s connection; the future of its PUBACK packet."""
    session = handler.session
    if session is None:
        raise AMQTTError("Session is not initialized.")
    packet_id = app_message.packet_id
    session.inflight_out[packet_id] = app_message
    waiting: asyncio.Future[Any] | None = handler._puback_waiters.get(packet_id)
    if waiting is not None and not waiting.done():
        return waiting  # already sent on this connection and waited for
    loop = asyncio.get_running_loop()
    # the waiter exists before the send, so the orphan sweep never takes a message being sent
    waiter: asyncio.Future[Any] = loop.create_future()
    handler._puback_waiters[packet_id] = waiter
    waiter.add_done_callback(partial(_acked, handler, session, app_message))
    dup = app_message.publish_packet is not None  # already sent once: this is a retry
    if _writes_now(handler):
        packet = app_message.build_publish_packet(dup=dup)
        handler.writer.write(packet.to_bytes())
        app_message.publish_packet = packet
        _written_at[waiter] = loop.time()
        return waiter
    turn = _turns.setdefault(handler, [0])
    turn[0] += 1
    task = asyncio.ensure_future(_write_in_turn(handler, app_message, dup, waiter, turn))
    _writing.add(task)
    task.add_done_callback(_writing.discard)
    return waiter


async def _write_in_turn(
    handler: Any, app_message: Any, dup: bool, waiter: asyncio.Future[Any], turn: list[int]
) -> None:
    """amqtt's write (its lock, taken in the order sent; its drain; its plugins)."""
    try:
        packet = app_message.build_publish_packet(dup=dup)
        await handler._send_packet(packet)
        app_message.publish_packet = packet
        if not waiter.done():
            _written_at[waiter] = asyncio.get_running_loop().time()
    except Exception as exc:  # noqa: BLE001 (the message stays in flight: sent again later)
        log.debug("PUBLISH %s not written: %r", app_message.packet_id, exc)
    finally:
        turn[0] -= 1


def _acked(handler: Any, session: Any, app_message: Any, waiter: asyncio.Future[Any]) -> None:
    _written_at.pop(waiter, None)
    packet_id = app_message.packet_id
    if handler._puback_waiters.get(packet_id) is waiter:
        del handler._puback_waiters[packet_id]
    if waiter.cancelled() or waiter.exception() is not None:
        return  # still in flight: a resend (the sweep, a reconnect) sends it again
    app_message.puback_packet = waiter.result()
    # only an acknowledged message leaves the in-flight table
    session.inflight_out.pop(packet_id, None)
    settle(app_message)


def expire(handler: Any, now: float | None = None) -> int:
    """Give up the PUBACKs written on ``handler``'s connection more than
    :data:`PUBACK_TIMEOUT` before ``now`` (loop time): their messages become orphans. How many."""
    now = asyncio.get_running_loop().time() if now is None else now
    late = [
        (packet_id, waiter)
        for packet_id, waiter in handler._puback_waiters.items()
        if now - _written_at.get(waiter, now) > PUBACK_TIMEOUT
    ]
    for packet_id, waiter in late:
        del handler._puback_waiters[packet_id]
        if not waiter.done():
            waiter.set_exception(TimeoutError(f"no PUBACK for packet ID {packet_id}"))
    return len(late)
