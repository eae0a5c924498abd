"""What a link's parts share: its configuration, queues, clients and counters.

:class:`LinkCore` holds the state of one link (:mod:`fogmesh.broker.link` runs it): the
status report (:mod:`fogmesh.broker.link_status`), the clients
(:mod:`fogmesh.broker.link_client`) and the writer (:mod:`fogmesh.broker.link_writer`) each
work on it, and the reader and the connection loops in :class:`fogmesh.broker.link.Link`.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Literal

import aiomqtt
from aiomqtt import MqttError
from paho.mqtt.client import MQTTMessage

from fogmesh.broker.config import LinkSpec, PathSpec, ResolvedEndpoint
from fogmesh.broker.diskqueue import DiskQueue
from fogmesh.broker.drain import Drain
from fogmesh.broker.echo import EchoMemory
from fogmesh.broker.link_filters import SessionFilters
from fogmesh.broker.link_reader import PassReader
from fogmesh.broker.paths import LinkPath, PathBook
from fogmesh.broker.rules import Route, routes_from
from fogmesh.broker.server import BRIDGE_PREFIX
from fogmesh.broker.wire import Publisher, WireBytes
from fogmesh.protocol import LinkState, topics

__all__ = [
    "BATCH",
    "DISK_ERRORS",
    "NET_ERRORS",
    "OTHER",
    "PUBLISH_TIMEOUT",
    "SESSION_EXPIRY",
    "LinkCore",
    "Side",
]

Side = Literal["local", "remote"]
OTHER: dict[Side, Side] = {"local": "remote", "remote": "local"}
PUBLISH_TIMEOUT = 30.0
SESSION_EXPIRY = 7 * 24 * 3600  # an MQTT 5 session (Mosquitto end) lives this long offline
BATCH = 200  # messages a writer hands over at once; order holds (one socket, sent in order)
NET_ERRORS = (MqttError, TimeoutError, OSError)
DISK_ERRORS = (sqlite3.Error,)
"""The disk queue's failures (a full disk, an I/O error): the connection is dropped with nothing
acknowledged, and tried again after a back-off, as after a network error."""


class LinkCore:
    """One link's state; nothing connects here."""

    def __init__(
        self,
        broker: str,
        spec: LinkSpec,
        ends: dict[Side, ResolvedEndpoint],
        data_dir: Path,
        paths: list[tuple[PathSpec, ResolvedEndpoint]] | None = None,
    ) -> None:
        """Prepare the link; nothing connects until :meth:`run`.

        ``paths``: the remote's paths, preferred first (:meth:`MeshSpec.resolve_paths`); None
        is the one path ``default`` to ``ends["remote"]``.
        """
        self.broker = broker
        self.spec = spec
        self.ends = ends
        self.routes = routes_from(spec.rules)
        qdir = data_dir / "links" / spec.name
        found = paths or [(PathSpec(name="default"), ends["remote"])]
        self.paths = [LinkPath(i, p, end) for i, (p, end) in enumerate(found)]
        self.path: LinkPath | None = None
        """The path the remote side is connected over (None: not connected)."""
        self._switching = False  # the remote side leaves a path for a better one: still "up"
        self._last_path: LinkPath | None = None  # the remote side's path before this one
        self.book = PathBook(qdir / "paths.json")
        self.filters = SessionFilters(qdir / "filters.json")
        """What each side's kept session is subscribed to (:mod:`fogmesh.broker.link_filters`)."""
        self.session_present: dict[Side, bool] = {"local": False, "remote": False}
        """Whether the broker kept the side's session at its last connect (CONNACK)."""
        # what a fallback session brought in, dropped once when the preferred session replays it
        self.fallback_seen = EchoMemory(ttl=SESSION_EXPIRY, max_entries=200_000)
        # queue[side] holds what arrived on ``side`` and must go to the other side
        self.queue: dict[Side, DiskQueue] = {
            side: DiskQueue(
                qdir / f"from-{side}.sqlite",
                max_messages=spec.queue.max_messages,
                drop=spec.queue.drop,
            )
            for side in ("local", "remote")
        }
        self.echo: dict[Side, EchoMemory] = {"local": EchoMemory(), "remote": EchoMemory()}
        self.connected: dict[Side, bool] = {"local": False, "remote": False}
        self._clients: dict[Side, aiomqtt.Client | None] = {"local": None, "remote": None}
        self._publishers: dict[aiomqtt.Client, Publisher] = {}
        self._readers: dict[aiomqtt.Client, PassReader] = {}
        self._wake: dict[Side, asyncio.Event] = {
            "local": asyncio.Event(),
            "remote": asyncio.Event(),
        }
        self._status_changed = asyncio.Event()  # the state changed: publish at once
        self._status_due = False  # publish even if unchanged (a side just connected)
        self.state = LinkState.CONNECTING
        self.since = time.time()
        self._was_up = False
        self.forwarded = 0
        self.ignored = 0
        self.coalesced = 0
        self.drains: dict[Side, Drain | None] = {"local": None, "remote": None}
        """Each writer's backlog drain (docs/mesh.md: ``drain``), while one runs."""
        self.last_error = ""
        self.status_topic = topics.mesh_link(broker, spec.name)
        self.wire: dict[Side, WireBytes] = {"local": WireBytes(), "remote": WireBytes()}
        """Bytes on each side's sockets since the link started (docs/mesh.md: ``wire_bytes``)."""
        self.path_wire: dict[str, WireBytes] = (
            {p.name: WireBytes() for p in self.paths} if len(self.paths) > 1 else {}
        )

    def _refresh_state(self) -> None:
        """Recompute the state after a connection came or went; wake the status loop on change.

        ``up`` needs both sides connected; a link that was up, or whose attempts fail, is
        ``down`` (also while it retries); ``connecting`` only before its first success or error.
        """
        remote = self.connected["remote"] or self._switching
        if self.connected["local"] and remote:
            state = LinkState.UP
            self._was_up = True
        elif self._was_up or self.last_error:
            state = LinkState.DOWN
        else:
            state = LinkState.CONNECTING
        if state != self.state:
            self.state = state
            self.since = time.time()
            self._status_changed.set()

    def _client_id(self, side: Side, path: LinkPath | None = None) -> str:
        base = f"{BRIDGE_PREFIX}{self.broker}-{self.spec.name}-{side[0]}"
        return base if path is None or path.index == 0 else f"{base}-{path.name}"

    def _mqtt5(self, side: Side) -> bool:
        return self.ends[side].kind == "mosquitto"

    def _take(self, side: Side, burst: list[MQTTMessage], path: LinkPath | None) -> None:
        """Queue ``burst``, arrived on ``side``, for the other side (the reader's)."""
        raise NotImplementedError

    def _route(self, side: Side, topic: str) -> tuple[Route, str] | None:
        for route in self.routes:
            if route.source == side and (dest := route.map(topic)) is not None:
                return route, dest
        return None
