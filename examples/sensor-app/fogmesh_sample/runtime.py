"""What the sensor and the convolver share: settings from env + flags, topics, and an MQTT loop.

Settings come from the environment the node agent passes (``FM_BROKER_HOST``, ``FM_BROKER_PORT``,
``FM_USERNAME``, ``FM_PASSWORD``, ``FM_TENANT``, ``FM_APP``, ``FM_RATE_HZ``, ``FM_CLIENT_ID``,
``FM_LOG_LEVEL``); a command-line flag overrides its variable.

:class:`MqttRunner` owns one paho client with a persistent session (MQTT 3.1.1,
``clean_session=False``, a stable client id) and runs it in the calling thread: it connects,
reconnects with jittered exponential back-off while the broker is away, and returns cleanly
(disconnecting first) on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import signal
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.reasoncodes import ReasonCode

__all__ = [
    "Backoff",
    "MqttRunner",
    "Settings",
    "add_common_arguments",
    "data_topic",
    "settings_from_args",
]

log = logging.getLogger("fogmesh_sample")

ROOT = "fm/v1"
_FORBIDDEN = set("/+#\0")


def data_topic(tenant: str, app: str, stream: str) -> str:
    """``fm/v1/data/{tenant}/{app}/{stream}``, as :func:`fogmesh.protocol.topics.data` builds it.

    Each id must be non-empty and free of ``/``, ``+``, ``#`` and NUL (the same rule, restated
    here so the sample app needs nothing but paho).
    """
    for name, value in (("tenant", tenant), ("app", app), ("stream", stream)):
        if not value or _FORBIDDEN & set(value) or not value.isprintable():
            raise ValueError(f"bad {name} id for a topic: {value!r}")
    return f"{ROOT}/data/{tenant}/{app}/{stream}"


@dataclass(frozen=True)
class Settings:
    """Where to connect and as whom, plus the per-component knobs."""

    host: str
    port: int
    username: str | None
    password: str | None
    tenant: str
    app: str
    client_id: str
    rate_hz: float
    keepalive: int = 30

    def topic(self, stream: str) -> str:
        return data_topic(self.tenant, self.app, stream)


def add_common_arguments(parser: argparse.ArgumentParser, env: Mapping[str, str]) -> None:
    """The flags both components take; each defaults to its ``FM_*`` variable."""
    parser.add_argument("--host", default=env.get("FM_BROKER_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(env.get("FM_BROKER_PORT", "1883")))
    parser.add_argument("--username", default=env.get("FM_USERNAME") or None)
    parser.add_argument(
        "--password",
        default=env.get("FM_PASSWORD") or None,
        help="prefer FM_PASSWORD: flags show up in ps",
    )
    parser.add_argument("--tenant", default=env.get("FM_TENANT", "demo"))
    parser.add_argument("--app", default=env.get("FM_APP", "sensor-app"))
    parser.add_argument(
        "--client-id",
        default=env.get("FM_CLIENT_ID") or None,
        help="MQTT client id (default: FM_CLIENT_ID, or {tenant}-{workload} under fogmesh)",
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=float(env.get("FM_RATE_HZ", "1")),
        help="sensor: readings per second (FM_RATE_HZ)",
    )
    parser.add_argument("--log-level", default=env.get("FM_LOG_LEVEL", "info"))


def settings_from_args(args: argparse.Namespace, component: str) -> Settings:
    """Settings from parsed flags; the client id defaults to ``{app}-{component}-{hostname}``."""
    logging.basicConfig(
        level=str(args.log_level).upper(),
        format=f"%(asctime)s %(levelname)s {component}: %(message)s",
    )
    # Under a fogmesh node agent the session belongs to the replica, not to the node it runs on:
    # FOGMESH_WORKLOAD ({app}-{component}-{replica}) and the tenant name it on every node, so a
    # replica moved (or re-placed after its node died) resumes the persistent session and gets
    # the readings queued for it meanwhile, once each and in order. Only one instance of a
    # replica runs at a time (a move stops the source before the peer starts it).
    workload = os.environ.get("FOGMESH_WORKLOAD")
    tenant = os.environ.get("FOGMESH_TENANT") or args.tenant
    default_id = (
        f"{tenant}-{workload}" if workload else f"{args.app}-{component}-{socket.gethostname()}"
    )
    if args.username and not default_id.startswith(f"{args.username}-"):
        default_id = f"{args.username}-{default_id}"  # a fogmesh account owns {username}-...
    client_id = args.client_id or default_id
    if args.rate <= 0:
        raise SystemExit("--rate / FM_RATE_HZ must be > 0")
    return Settings(
        host=args.host,
        port=args.port,
        username=args.username,
        password=args.password,
        tenant=args.tenant,
        app=args.app,
        client_id=client_id,
        rate_hz=args.rate,
    )


class Backoff:
    """Exponential back-off with full jitter: the n-th delay is uniform in [0, min(cap, base*2^n)],
    never below ``floor`` so a flapping broker is not hammered."""

    def __init__(self, base: float = 0.5, cap: float = 30.0, floor: float = 0.1) -> None:
        self.base, self.cap, self.floor = base, cap, floor
        self.attempt = 0

    def next(self) -> float:
        ceiling = min(self.cap, self.base * (2**self.attempt))
        self.attempt = min(self.attempt + 1, 30)
        return max(self.floor, random.uniform(0.0, ceiling))

    def reset(self) -> None:
        self.attempt = 0


MessageHandler = Callable[[mqtt.Client, mqtt.MQTTMessage], None]


class MqttRunner:
    """One persistent-session paho client run in the calling thread until SIGTERM/SIGINT.

    ``subscriptions`` are (re)made on every CONNACK (harmless when the broker kept the session);
    ``tick`` is called about every ``tick_interval`` seconds from the loop, connected or not.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        subscriptions: Sequence[tuple[str, int]] = (),
        on_message: MessageHandler | None = None,
        tick: Callable[[MqttRunner], None] | None = None,
        tick_interval: float = 0.05,
    ) -> None:
        self.settings = settings
        self.subscriptions = list(subscriptions)
        self.tick = tick
        self.tick_interval = tick_interval
        self.stopping = threading.Event()
        self.connected = False
        self.backoff = Backoff()
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=settings.client_id,
            clean_session=False,
            protocol=mqtt.MQTTv311,
        )
        if settings.username is not None:
            client.username_pw_set(settings.username, settings.password)
        client.max_inflight_messages_set(100)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        if on_message is not None:
            handler = on_message

            def _on_message(c: mqtt.Client, _userdata: Any, msg: mqtt.MQTTMessage) -> None:
                try:
                    handler(c, msg)
                except Exception:  # a bad message must not kill the worker
                    log.exception("handling a message on %s failed", msg.topic)

            client.on_message = _on_message
        self.client = client

    # -- paho callbacks ------------------------------------------------------------------------
    def _on_connect(
        self,
        client: mqtt.Client,
        _userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        _properties: Any,
    ) -> None:
        if reason_code.is_failure:
            log.warning("broker refused the connection: %s", reason_code)
            return
        self.connected = True
        self.backoff.reset()
        log.info(
            "connected to %s:%d as %s (session present: %s)",
            self.settings.host,
            self.settings.port,
            self.settings.client_id,
            flags.session_present,
        )
        for topic, qos in self.subscriptions:
            client.subscribe(topic, qos=qos)

    def _on_subscribe(
        self,
        _client: mqtt.Client,
        _userdata: Any,
        mid: int,
        reason_codes: list[ReasonCode],
        _properties: Any,
    ) -> None:
        granted = [rc.value for rc in reason_codes]
        if any(rc.is_failure for rc in reason_codes):
            log.warning("subscription %d refused: %s", mid, granted)
        else:
            log.info("subscribed (mid %d, granted QoS %s)", mid, granted)

    def _on_disconnect(
        self,
        _client: mqtt.Client,
        _userdata: Any,
        _flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        _properties: Any,
    ) -> None:
        if self.connected and not self.stopping.is_set():
            log.warning("lost the broker: %s", reason_code)
        self.connected = False

    # -- lifecycle -----------------------------------------------------------------------------
    def stop(self, *_: object) -> None:
        """Ask :meth:`run` to return (safe from a signal handler or another thread)."""
        self.stopping.set()

    def install_signal_handlers(self) -> None:
        def handler(signum: int, _frame: FrameType | None) -> None:
            log.info("%s: stopping", signal.Signals(signum).name)
            self.stopping.set()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    def run(self) -> int:
        """Connect, loop, reconnect with back-off; on stop, disconnect cleanly. Returns 0."""
        s = self.settings
        while not self.stopping.is_set():
            try:
                self.client.connect(s.host, s.port, keepalive=s.keepalive)
            except (OSError, ValueError) as exc:
                delay = self.backoff.next()
                log.warning(
                    "broker %s:%d unreachable (%s); retry in %.1fs", s.host, s.port, exc, delay
                )
                self._idle(delay)
                continue
            self._loop_while_up()
            if not self.stopping.is_set():
                delay = self.backoff.next()
                log.info("reconnecting in %.1fs", delay)
                self._idle(delay)
        self._disconnect()
        return 0

    def _loop_while_up(self) -> None:
        next_tick = time.monotonic()
        while not self.stopping.is_set():
            rc = self.client.loop(timeout=min(self.tick_interval, 0.2))
            now = time.monotonic()
            if self.tick is not None and now >= next_tick:
                next_tick = now + self.tick_interval
                self.tick(self)
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                self.connected = False
                return

    def _idle(self, seconds: float) -> None:
        """Wait ``seconds`` (or until stopped), still ticking so a sensor keeps its clock."""
        deadline = time.monotonic() + seconds
        while not self.stopping.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self.stopping.wait(min(left, self.tick_interval))
            if self.tick is not None:
                self.tick(self)

    def _disconnect(self) -> None:
        if self.connected:
            self.client.disconnect()
            # Let paho write the DISCONNECT packet.
            for _ in range(5):
                if self.client.loop(timeout=0.05) != MQTTErrorCode.MQTT_ERR_SUCCESS:
                    break
        self.connected = False
        log.info("stopped")


def dumps(payload: Mapping[str, object]) -> bytes:
    """Compact JSON, as bytes."""
    return json.dumps(payload, separators=(",", ":")).encode()


def env() -> Mapping[str, str]:
    return os.environ
