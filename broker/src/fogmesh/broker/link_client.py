"""A link's MQTT clients: how each side's connection is made, opened and closed.

Each side's client is persistent (stable client id, manual PUBACKs after the disk commit),
says ``down`` by its will, counts its socket bytes, reads every whole packet a wake-up brought,
joins its writes, and hands batches over through a :class:`~fogmesh.broker.wire.Publisher`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from typing import Any

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from fogmesh.broker.link_core import (
    BATCH,
    NET_ERRORS,
    PUBLISH_TIMEOUT,
    SESSION_EXPIRY,
    Side,
)
from fogmesh.broker.link_reader import PassReader
from fogmesh.broker.link_status import LinkStatusReport
from fogmesh.broker.paths import LinkPath, PathSpent, tls_parameters
from fogmesh.broker.wire import (
    Publisher,
    WireBytes,
    coalesce_writes,
    count_bytes,
    lean_paho,
    no_filtered_callbacks,
    quiet_debug_log,
)
from fogmesh.bus import _paho, _paho_wire, drain_reads
from fogmesh.protocol import LinkState

__all__ = ["CONNECT_TIMEOUT", "RECEIVE_MAXIMUM", "LinkClients"]

log = logging.getLogger("fogmesh.broker.link")
CONNECT_TIMEOUT = 15.0
RECEIVE_MAXIMUM = 5 * BATCH
"""QoS 1 messages an MQTT 5 end (Mosquitto) may send the link before it waits for PUBACKs.

Mosquitto otherwise holds a client to its ``max_inflight_messages`` (default 20): each 20
messages then waited for a disk commit and a round trip. The reader commits what one socket
read brought (:mod:`fogmesh.broker.link_reader`), so a few batches' worth keeps it fed."""


class LinkClients(LinkStatusReport):
    """Make, connect and close the clients of a link's two sides."""

    def _make_client(self, side: Side, path: LinkPath | None = None) -> aiomqtt.Client:
        end = self.ends[side] if path is None else path.end
        keepalive = (path and path.spec.keepalive) or self.spec.keepalive
        tls = tls_parameters(end)
        # Each broker hears "down" if it loses this link's connection without a goodbye (the
        # process died, or the broker noticed a silent partition by keepalive).
        # The will names its own path: a will a far broker fires late for a path the link has
        # already left is told apart from the loss of the path in use (SiteLinks.update).
        gone = self.status(LinkState.DOWN).model_copy(
            update={
                "last_error": f"{side} connection lost",
                "since": None,
                "path": path.name if path is not None and len(self.paths) > 1 else "",
            }
        )
        will = aiomqtt.Will(self.status_topic, gone.model_dump_json(), qos=1, retain=True)
        # a fallback path's session is clean: the preferred path's persistent one keeps
        # collecting everything meanwhile, so nothing is lost when a fallback session goes
        kept = path is None or path.index == 0
        v5: dict[str, Any] = {"clean_session": not kept}
        if self._mqtt5(side):
            # MQTT 5 keeps the retain flag on live deliveries (retain-as-published) and never
            # hands the link its own messages back (no-local); Mosquitto speaks it, amqtt not
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = SESSION_EXPIRY if kept else 0
            props.ReceiveMaximum = RECEIVE_MAXIMUM
            v5 = {
                "protocol": aiomqtt.ProtocolVersion.V5,
                "clean_start": not kept,
                "properties": props,
            }
        client = aiomqtt.Client(
            end.host,
            end.port,
            identifier=self._client_id(side, path),
            **v5,
            username=end.username,
            password=end.password,
            keepalive=keepalive,
            tls_params=tls,
            tls_insecure=bool(end.tls and end.tls.insecure) or None,
            timeout=PUBLISH_TIMEOUT,
            # no limit in paho: the writer's WINDOW bounds what is in flight, and paho scans
            # every in-flight message on each PUBACK when it has a limit to enforce
            max_inflight_messages=0,
            max_queued_outgoing_messages=0,
            will=will,
            # a hop's latency is the point: no Nagle delay on the link's sockets
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
        )
        # paho's per-message objects made lean, whichever MQTT version the end speaks
        lean_paho()
        # Acknowledge only after the message is on disk: aiomqtt 2.5 has no switch for this,
        # paho (underneath) does.
        _paho.set_manual_ack(client)
        if kept:
            self._note_session(side, client)
        count_bytes(client, *self._counters(side, path))
        # every whole packet a wake-up brought is handled in it: a burst reaches the reader
        # (one disk commit, one send of PUBACKs) and a batch's PUBACKs the writer together
        drain_reads(_paho.paho_of(client))
        # arrivals go to disk and are acknowledged in the pass that read them
        self._readers[client] = PassReader(client, lambda burst: self._take(side, burst, path))
        no_filtered_callbacks(client)  # the link sets none: no topic lookup per message
        quiet_debug_log(client)  # no Logger.log call per packet while debug is off
        coalesce_writes(client)  # a burst's PUBACKs / a batch's PUBLISHes in one send()
        _paho_wire.write_in_pass(client)  # that send in the pass that queued them
        # a writer hears of its acknowledged batches through the same event as of new messages
        self._publishers[client] = Publisher(client, self._wake[side].set)
        return client

    def _note_session(self, side: Side, client: aiomqtt.Client) -> None:
        """Note in :attr:`session_present` whether the broker kept ``side``'s session."""

        def note(present: bool) -> None:
            self.session_present[side] = present

        self.session_present[side] = False
        _paho_wire.before_on_connect(client, note)

    def _counters(self, side: Side, path: LinkPath | None) -> list[WireBytes]:
        """The wire counters a client of ``side`` over ``path`` adds its bytes to."""
        found = [self.wire[side]]
        if side == "remote" and path is not None and path.name in self.path_wire:
            found.append(self.path_wire[path.name])
        return found

    async def _connect(
        self, side: Side, start: int
    ) -> tuple[aiomqtt.Client, LinkPath | None] | None:
        """Connect ``side``: the remote over the first path from ``start`` on (wrapping round)
        that answers and has budget left; None when none did."""
        if side == "local":
            candidates: list[LinkPath | None] = [None]
        else:
            order = self.paths[start:] + self.paths[:start]
            candidates = [p for p in order if not self.book.spent(p)]
            if not candidates:
                self._note_error(side, PathSpent("every path's monthly budget is spent"))
        for path in candidates:
            client = self._make_client(side, path)
            wait = CONNECT_TIMEOUT
            if path is not None and len(self.paths) > 1:
                wait = path.spec.connect_timeout  # a dead path must not hold up the next
            try:
                async with asyncio.timeout(wait):
                    await client.__aenter__()
            except NET_ERRORS as exc:
                self._publishers.pop(client, None)
                self._readers.pop(client, None)
                self._note_error(side, exc, path)
                continue
            return client, path
        return None

    async def _close(self, side: Side, client: aiomqtt.Client, *, say_down: bool = True) -> None:
        # On shutdown each side says "down" itself (a clean disconnect sends no will); a switch
        # of paths says nothing: the next path's connection follows at once.
        with contextlib.suppress(*NET_ERRORS, asyncio.CancelledError):
            async with asyncio.timeout(3.0):
                if say_down:
                    down = self.status(LinkState.DOWN).model_copy(update={"since": time.time()})
                    data = down.model_dump_json().encode()
                    self.echo[side].remember(self.status_topic, data)
                    await client.publish(self.status_topic, data, qos=1, retain=True)
                self._clients[side] = None
                await client.__aexit__(None, None, None)
        self._clients[side] = None
        self._publishers.pop(client, None)
        self._readers.pop(client, None)

    def _note_error(self, side: Side, exc: BaseException, path: LinkPath | None = None) -> None:
        over = f" (path {path.name})" if path is not None and len(self.paths) > 1 else ""
        self.last_error = f"{side}{over}: {type(exc).__name__}: {exc}"[:1024]
        log.warning("link %s: %s", self.spec.name, self.last_error)
        self._refresh_state()
