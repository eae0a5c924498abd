"""The partition bench's child processes, each run inside a namespace (``partition.py site`` and
``partition.py watch``): the site's simulated nodes and reading publisher, and the cloud's
persistent readings subscriber. They stop when the run's stop file appears (they live in other
namespaces) and leave their figures in JSON files beside it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import time
from pathlib import Path
from typing import Any

import aiomqtt
from registry_sim import heartbeat_json, hello_json

__all__ = [
    "CLOUD_PORT",
    "PASSWORD",
    "READINGS",
    "SITE_PORT",
    "SUBSCRIBED",
    "WAN_PORT",
    "read_json",
    "site_nodes",
    "watch_readings",
]

CLOUD_PORT, WAN_PORT, SITE_PORT = 21883, 21884, 21885
READINGS = "fm/v1/data/bench/readings/out"
SUBSCRIBED = "readings subscribed"
"""What the cloud's subscriber prints once its subscription stands."""
PASSWORD = os.environ.setdefault("FM_PARTITION_BENCH_PW", secrets.token_hex(8))  # children inherit
CONNS = 10


def _stopped(stop_file: Path) -> bool:
    """Whether the run asked its children to stop (a file: they live in other namespaces)."""
    return stop_file.exists()


def _wait_stopped(stop_file: Path) -> None:
    while not _stopped(stop_file):
        time.sleep(0.2)


def _write(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data))


async def site_nodes(port: int, nodes: int, interval: float, stop_file: Path, out: Path) -> None:
    """Simulated nodes (hello + online retained, then heartbeats) and a reading every 0.1 s."""
    names = [f"sim-{i:05d}" for i in range(nodes)]
    stats = {"readings_sent": 0, "heartbeats": 0}

    def client(ident: str) -> aiomqtt.Client:
        return aiomqtt.Client(
            "127.0.0.1", port, identifier=ident, username="svc", password=PASSWORD, timeout=30
        )

    reconnect = stop_file.with_name("reconnect")

    async def conn(i: int, part: list[str]) -> None:
        # twice: once at the start, once more at the heal (the storm: every node at once)
        await joined(i, part, until_reconnect=True)
        await joined(i, part, until_reconnect=False)

    async def joined(i: int, part: list[str], *, until_reconnect: bool) -> None:
        c = client(f"bench-sim-{i}" if until_reconnect else f"bench-sim-{i}-again")
        await c.__aenter__()
        try:
            await heartbeats(c, part, until_reconnect=until_reconnect)
        finally:
            # aiomqtt's exit waits for its DISCONNECT with no deadline: bounded here, so a
            # node that reconnects is not stuck leaving behind a busy broker
            with contextlib.suppress(TimeoutError, aiomqtt.MqttError):
                async with asyncio.timeout(5):
                    await c.__aexit__(None, None, None)

    async def heartbeats(c: aiomqtt.Client, part: list[str], *, until_reconnect: bool) -> None:
        c.pending_calls_threshold = 1000
        for n in part:
            hello = json.loads(hello_json(n))
            hello["facts"]["site"] = "site"  # the broker it is joined to: the registry's site
            await c.publish(f"fm/v1/nodes/{n}/hello", json.dumps(hello), qos=1, retain=True)
            state = json.dumps({"node": n, "state": "online", "boot_id": "b1"})
            await c.publish(f"fm/v1/nodes/{n}/state", state, qos=1, retain=True)
            # its first heartbeat at once, as an agent's: the connection's other nodes may
            # take longer than the liveness timeout to join on a loaded machine
            await c.publish(f"fm/v1/nodes/{n}/heartbeat", heartbeat_json(n, 0, interval))
        seq = 1
        while not _stopped(stop_file):
            if until_reconnect and reconnect.exists():
                return
            began = time.monotonic()
            for n in part:
                await c.publish(f"fm/v1/nodes/{n}/heartbeat", heartbeat_json(n, seq, interval))
                stats["heartbeats"] += 1
            seq += 1
            while time.monotonic() - began < interval and not _stopped(stop_file):
                if until_reconnect and reconnect.exists():
                    break  # reconnect at once, with every other node
                await asyncio.sleep(0.2)

    async def readings() -> None:
        async with client("bench-readings") as c:
            while not _stopped(stop_file):
                n = stats["readings_sent"]
                await c.publish(READINGS, f"r-{n}".encode(), qos=1)  # returns once acked
                stats["readings_sent"] = n + 1
                await asyncio.sleep(0.1)
        _write(stop_file.with_name("readings-sent.json"), stats["readings_sent"])

    parts = [names[i::CONNS] for i in range(CONNS)]
    await asyncio.gather(readings(), *(conn(i, p) for i, p in enumerate(parts) if p))
    _write(out, stats)


async def watch_readings(port: int, stop_file: Path, out: Path) -> None:
    """The cloud's persistent readings subscriber: every reading's number, in arrival order,
    until every reading the site sent arrived (it says how many once stopped), or 120 s after
    the stop."""
    seen: list[int] = []
    async with aiomqtt.Client(
        "127.0.0.1", port, identifier="bench-watch", username="svc", password=PASSWORD,
        clean_session=False, timeout=30,
    ) as c:  # fmt: skip
        await c.subscribe(READINGS, qos=1)
        print(SUBSCRIBED, flush=True)  # the run starts the site's readings after this line

        async def read() -> None:
            async for msg in c.messages:
                if isinstance(msg.payload, bytes) and msg.payload.startswith(b"r-"):
                    seen.append(int(msg.payload[2:]))

        reader = asyncio.create_task(read())
        await asyncio.to_thread(_wait_stopped, stop_file)
        sent_file = stop_file.with_name("readings-sent.json")
        for _ in range(1200):
            sent = await asyncio.to_thread(read_json, sent_file, None)
            if sent is not None and len(set(seen)) >= sent:
                break
            await asyncio.sleep(0.1)
        reader.cancel()
    _write(out, seen)


def read_json(path: Path, default: Any) -> Any:
    """The JSON ``path`` holds, or ``default`` (no file yet, or not all of it written)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return default
