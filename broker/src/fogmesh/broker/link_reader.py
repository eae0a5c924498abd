"""A link client's arrivals, taken from paho in the pass that read them.

aiomqtt turns each PUBLISH paho decodes into a :class:`aiomqtt.Message`, puts it on a queue and
wakes the reader task, which then commits and acknowledges in a later pass of the event loop.
:class:`PassReader` takes paho's messages itself: they are collected while paho reads (every
whole packet one socket read brought: :func:`fogmesh.bus.drain_reads`), and when that read is
over the whole burst is handed to ``take`` (which commits it to the disk queue) and only then
acknowledged, in the same pass. A ``take`` that raises acknowledges nothing, then or after:
the reader task raises it and the connection is dropped, so the broker delivers again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiomqtt
from paho.mqtt.client import MQTTMessage

from fogmesh.bus import _paho, _paho_wire

__all__ = ["PassReader"]


class PassReader:
    """Collect ``client``'s arrivals during each socket read; after it, ``take`` them, then ack.

    Hook before the client connects and after :func:`fogmesh.bus.drain_reads` (whose read loop
    this wraps). aiomqtt's own message queue then stays empty.
    """

    def __init__(self, client: aiomqtt.Client, take: Callable[[list[MQTTMessage]], None]) -> None:
        self._paho = _paho.paho_of(client)
        self._take = take
        self._pending: list[MQTTMessage] = []
        self.failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        """Completed with the exception of a ``take`` that failed."""
        _paho_wire.replace_on_message(client, self._pending_append)
        _paho_wire.after_each_read(client, self._flush)

    def _pending_append(self, _paho: Any, _userdata: Any, message: MQTTMessage) -> None:
        self._pending.append(message)

    def _flush(self) -> None:
        if not self._pending or self.failed.done():
            return
        burst, self._pending = self._pending, []
        try:
            self._take(burst)
        except Exception as exc:  # noqa: BLE001 -- raised in the reader task (``failed``)
            self.failed.set_exception(exc)
            return
        ack = self._paho.ack
        for message in burst:
            if message.qos > 0:
                # only now: it is committed to the disk queue (or deliberately dropped)
                ack(message.mid, message.qos)

    async def run(self, client: aiomqtt.Client) -> None:
        """Until ``client`` is disconnected (raises ``MqttError``) or a ``take`` failed (raises
        its exception)."""
        gone = _paho.disconnected(client)
        await asyncio.wait((gone, self.failed), return_when=asyncio.FIRST_COMPLETED)
        if self.failed.done():
            self.failed.result()
        raise aiomqtt.MqttError("disconnected") from (gone.exception() if gone.done() else None)
