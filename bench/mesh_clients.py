"""The mesh bench's clients and probes: a threaded paho client, one-at-a-time latency, draining
a subscriber, the site link's retained status, and the CPU seconds of the site's processes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import subprocess
import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from fogmesh.protocol import LinkStatus, topics
from tests.support.mesh_file import PASSWORDS
from tests.support.mqtt import client

__all__ = ["INFLIGHT", "Paho", "cpu_s", "drain", "latency", "link_status", "pct"]

INFLIGHT = 100
"""QoS 1 publishes a bench publisher keeps in flight (paho's default is 20)."""


def pct(values: list[float], p: float) -> float:
    """The p-th percentile (0-100) of ``values``, in the values' unit."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


class Paho:
    """A paho client with its network loop in a thread; arrivals go to :attr:`arrived`."""

    def __init__(
        self, port: int, user: str | None, *, ident: str | None = None, clean: bool = True
    ) -> None:
        self.port = port
        self.arrived: queue.Queue[bytes] = queue.Queue()
        self.mqtt = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=ident or f"{user or 'bench'}-b{uuid.uuid4().hex[:10]}",
            clean_session=clean,
        )
        if user is not None:
            self.mqtt.username_pw_set(user, PASSWORDS[user])
        self.mqtt.max_inflight_messages_set(INFLIGHT)
        self.mqtt.max_queued_messages_set(0)
        self.mqtt.on_message = lambda _c, _u, msg: self.arrived.put(bytes(msg.payload))
        self._up = threading.Event()
        self.mqtt.on_connect = lambda *_a: self._up.set()

    def __enter__(self) -> Paho:
        self.mqtt.connect("127.0.0.1", self.port, keepalive=60)
        self.mqtt.loop_start()
        if not self._up.wait(30):
            raise TimeoutError(f"no CONNACK from port {self.port}")
        return self

    def __exit__(self, *exc: object) -> None:
        self.mqtt.disconnect()
        self.mqtt.loop_stop()

    def subscribe(self, topic: str) -> None:
        """Subscribe at QoS 1 and wait for the SUBACK."""
        done = threading.Event()
        self.mqtt.on_subscribe = lambda *_a: done.set()
        self.mqtt.subscribe(topic, qos=1)
        if not done.wait(30):
            raise TimeoutError(f"no SUBACK for {topic}")

    def publish_all(self, topic: str, payloads: list[bytes], timeout: float) -> None:
        """Publish at QoS 1 (paho keeps :data:`INFLIGHT` in flight); wait for every PUBACK."""
        infos = [self.mqtt.publish(topic, p, qos=1) for p in payloads]
        deadline = time.monotonic() + timeout
        for info in infos:
            info.wait_for_publish(max(0.0, deadline - time.monotonic()))
            if not info.is_published():
                raise TimeoutError(f"{topic}: not acknowledged within {timeout:.0f} s")


def latency(
    pub_port: int, sub_port: int, n: int, pub_user: str | None, sub_user: str | None
) -> list[float]:
    """One message at a time, publish -> arrival, in milliseconds."""
    out: list[float] = []
    with Paho(sub_port, sub_user) as sub, Paho(pub_port, pub_user) as pub:
        sub.subscribe("b/lat")
        time.sleep(0.5)
        for i in range(n + 20):
            t0 = time.perf_counter()
            pub.mqtt.publish("b/lat", str(i).encode(), qos=1)
            payload = sub.arrived.get(timeout=30)
            if i >= 20 and payload == str(i).encode():  # the first 20 warm up
                out.append((time.perf_counter() - t0) * 1000)
    return out


def drain(sub: Paho, n: int, prefix: bytes, timeout: float) -> tuple[int, float]:
    """Receive until ``n`` distinct ``prefix`` messages arrived; (distinct, seconds)."""
    seen: set[bytes] = set()
    t0 = time.perf_counter()
    last = t0
    deadline = time.monotonic() + timeout
    while len(seen) < n:
        try:
            payload = sub.arrived.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            print(f"  ! only {len(seen)} of {n} {prefix!r} messages arrived within {timeout:.0f} s")
            break
        if payload.startswith(prefix):
            seen.add(payload)
            last = time.perf_counter()
    return len(seen), last - t0


async def link_status(
    port: int, user: str | None, forwarded: int = 0, timeout: float = 20.0
) -> LinkStatus | None:
    """The site link's retained status once it counts ``forwarded`` messages (None: not seen)."""
    found: LinkStatus | None = None
    async with client(port, user) as c:
        await c.subscribe(topics.mesh_link("site", "wan"), qos=1)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                async for msg in c.messages:
                    if isinstance(msg.payload, bytes):
                        found = LinkStatus.model_validate_json(msg.payload)
                        if found.forwarded >= forwarded:
                            break
    return found


def cpu_s(procs: list[subprocess.Popen[bytes] | None]) -> float:
    """CPU seconds (user + system) the processes used so far (Linux ``/proc``)."""
    total = 0
    for proc in procs:
        if proc is not None:
            fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")
