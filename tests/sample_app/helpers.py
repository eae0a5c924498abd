"""Helpers for the sample app tests: a collecting MQTT subscriber and app subprocesses."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from fogmesh.protocol import topics
from tests.support.brokers import BrokerProcess

REPO = Path(__file__).resolve().parents[2]
BUILD_SH = REPO / "deploy" / "images" / "sample-app" / "build.sh"
USERNAME = "sample"  # the test amqtt broker queues messages only for sessions with a username
DEADLINE = 60.0  # generous: a noisy 2-core machine


def wait_for(what: str, predicate: Callable[[], bool], timeout: float = DEADLINE) -> None:
    """Poll ``predicate`` until it holds; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def app_env(broker: BrokerProcess, tenant: str, app: str, **extra: str) -> dict[str, str]:
    """The environment the node agent would pass, pointing at ``broker``."""
    return {
        "FM_BROKER_HOST": "127.0.0.1",
        "FM_BROKER_PORT": str(broker.port),
        "FM_USERNAME": USERNAME,
        "FM_PASSWORD": "",
        "FM_TENANT": tenant,
        "FM_APP": app,
        "FM_LOG_LEVEL": "info",
        **extra,
    }


@dataclass
class Names:
    """A unique tenant/app per test, so topics and sessions never collide."""

    tenant: str = field(default_factory=lambda: f"t{uuid.uuid4().hex[:8]}")
    app: str = "sensorapp"

    def topic(self, stream: str) -> str:
        return topics.data(self.tenant, self.app, stream)


class Collector:
    """A paho subscriber on ``.../in`` and ``.../out`` recording readings and results by seq."""

    def __init__(self, broker: BrokerProcess, names: Names) -> None:
        self.names = names
        self.lock = threading.Lock()
        self.inputs: dict[int, dict[str, Any]] = {}
        self.outputs: dict[int, dict[str, Any]] = {}
        self.output_count = 0
        self._subscribed = threading.Event()
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"collector-{uuid.uuid4().hex[:8]}",
            clean_session=True,
            protocol=mqtt.MQTTv311,
        )
        client.username_pw_set(USERNAME, "")
        client.on_connect = self._on_connect
        client.on_subscribe = lambda *_a: self._subscribed.set()
        client.on_message = self._on_message
        self.client = client
        self.broker = broker

    def _on_connect(self, client: mqtt.Client, *_: Any) -> None:
        client.subscribe([(self.names.topic("in"), 1), (self.names.topic("out"), 1)])

    def _on_message(self, _client: mqtt.Client, _userdata: Any, msg: mqtt.MQTTMessage) -> None:
        body = json.loads(msg.payload)
        with self.lock:
            if msg.topic == self.names.topic("in"):
                self.inputs[int(body["seq"])] = body
            elif msg.topic == self.names.topic("out"):
                self.outputs[int(body["seq"])] = body
                self.output_count += 1

    def __enter__(self) -> Collector:
        self.client.connect("127.0.0.1", self.broker.port)
        self.client.loop_start()
        if not self._subscribed.wait(30):
            raise AssertionError("the collector was not subscribed within 30s")
        return self

    def __exit__(self, *_: object) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def seqs_in(self) -> set[int]:
        with self.lock:
            return set(self.inputs)

    def seqs_out(self) -> set[int]:
        with self.lock:
            return set(self.outputs)


@dataclass
class AppProcess:
    """``python -m fogmesh_sample.{component}`` as a child process, logging to a file."""

    component: str  # "sensor" or "convolve"
    env: dict[str, str]
    log_path: Path
    args: tuple[str, ...] = ()
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> AppProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", f"fogmesh_sample.{self.component}", *self.args],
                env={**os.environ, **self.env},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait; return the exit code (killing after ``timeout`` fails the test)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"{self.component} ignored SIGTERM:\n{self.log()}") from None

    def wait(self, timeout: float = DEADLINE) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"{self.component} did not finish in {timeout}s:\n{self.log()}"
            ) from None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@contextlib.contextmanager
def running(app: AppProcess) -> Iterator[AppProcess]:
    """Start ``app``; whatever happens, do not leave it behind."""
    app.start()
    try:
        yield app
    finally:
        app.kill()


def sensor_env(env: dict[str, str], tenant: str, rate: str = "25") -> dict[str, str]:
    """``env`` for the tenant's sensor: its own client id, ``rate`` readings a second."""
    return {**env, "FM_CLIENT_ID": f"{tenant}-sensor", "FM_RATE_HZ": rate}


def send_readings(env: dict[str, str], log: Path, count: int, seed: int) -> AppProcess:
    """Run the sensor for ``count`` readings from ``seed``; it must exit 0."""
    sensor = AppProcess("sensor", env, log, args=("--count", str(count), "--seed", str(seed)))
    with running(sensor):
        assert sensor.wait() == 0, sensor.log()
    return sensor


def subscribed(what: str, app: AppProcess) -> None:
    """Wait until ``app`` (a convolver) has subscribed; ``what`` names it in a failure."""
    wait_for(f"{what} to subscribe", lambda: "subscribed" in app.log())


def count_lines(text: str, needle: str) -> int:
    return sum(1 for line in text.splitlines() if needle in line)
