"""The registry bench's node simulator: one child process of ``bench/registry.py``.

Usage (by the bench): ``python bench/registry_sim.py PORT PREFIX FIRST COUNT INTERVAL UNTIL``:
nodes ``{PREFIX}{FIRST:06d}`` ... over ``CONNS_PER_PROC`` MQTT connections, each node saying
hello and online (retained, QoS 1) and then heartbeating (QoS 0) every ``INTERVAL`` seconds
until the unix time ``UNTIL``; prints ``{"published": n, "max_late_s": s, "actual": n}`` at
the end. Each connection also subscribes to its nodes' desired state (``fm/v1/nodes/+/desired``)
and answers a desired state of one of its nodes with that node's actual state (retained, QoS 1:
``observed_generation`` the desired one, converged), as an agent does.

``FOGMESH_USERNAME`` / ``FOGMESH_PASSWORD`` in the environment: the account every connection
uses (a broker without anonymous access, as the NATS cluster); else anonymous, named by the
connection's client id.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time

import aiomqtt

ROOT = "fm/v1/nodes"
CONNS_PER_PROC = 10
JOIN_TIMEOUT_S = 300.0


def hello_json(node: str) -> bytes:
    facts = {
        "device_id": node,
        "arch": "aarch64" if hash(node) % 2 else "x86_64",
        "cpu_count": 4,
        "memory_bytes": 8 << 30,
        "disk_bytes": 64 << 30,
        "labels": {"zone": f"z{hash(node) % 8}"},
        "location": {"lat": 48.0 + (hash(node) % 100) / 100, "lon": 11.0},
    }
    return json.dumps({"node": node, "facts": facts, "boot_id": "b1", "ts": time.time()}).encode()


def heartbeat_json(node: str, seq: int, interval: float) -> bytes:
    usage = {
        "cpu_percent": 12.5,
        "memory_used_bytes": 3 << 30,
        "memory_total_bytes": 8 << 30,
        "disk_used_bytes": 10 << 30,
        "disk_total_bytes": 64 << 30,
    }
    msg = {"node": node, "seq": seq, "interval_s": interval, "usage": usage, "ts": time.time()}
    return json.dumps(msg).encode()


async def sim_join(client: aiomqtt.Client, nodes: list[str], joined: set[str]) -> None:
    """Every node says hello and online (retained, QoS 1), 100 in flight; each joins
    ``joined`` once both are sent, and from then on heartbeats, as an agent does."""
    for i in range(0, len(nodes), 100):
        chunk = nodes[i : i + 100]
        hellos = [(f"{ROOT}/{n}/hello", hello_json(n)) for n in chunk]
        states = [
            (f"{ROOT}/{n}/state", json.dumps({"node": n, "state": "online", "boot_id": "b1"}))
            for n in chunk
        ]
        for batch in (hellos, states):
            # a clustered broker stores each retained QoS 1 message on a quorum of members
            # before its PUBACK: under a join storm that took more than aiomqtt's 10 s
            wait = JOIN_TIMEOUT_S
            await asyncio.gather(
                *(client.publish(t, p, qos=1, retain=True, timeout=wait) for t, p in batch)
            )
        joined.update(chunk)


async def sim_beat(
    client: aiomqtt.Client,
    nodes: list[str],
    joined: set[str],
    *,
    interval: float,
    until: float,
    stats: dict[str, float],
) -> None:
    """Heartbeat every joined node every ``interval``, spread over a 50 ms wheel."""
    tick = 0.05
    slots = max(1, round(interval / tick))
    wheel: list[list[str]] = [[] for _ in range(slots)]
    for n in nodes:
        wheel[hash(n) % slots].append(n)
    seqs = dict.fromkeys(nodes, 0)
    start, k = time.monotonic(), 0
    while time.time() < until:
        for n in wheel[k % slots]:
            if n not in joined:
                continue
            await client.publish(f"{ROOT}/{n}/heartbeat", heartbeat_json(n, seqs[n], interval))
            seqs[n] += 1
            stats["published"] += 1
        k += 1
        delay = start + k * tick - time.monotonic()
        stats["max_late_s"] = max(stats["max_late_s"], -delay)
        if delay > 0:
            await asyncio.sleep(delay)


def actual_json(node: str, generation: int) -> bytes:
    """The actual state of a simulated node that has applied desired ``generation``."""
    msg = {"node": node, "observed_generation": generation, "state": "converged", "ts": time.time()}
    return json.dumps(msg).encode()


async def sim_answer(client: aiomqtt.Client, nodes: set[str], stats: dict[str, float]) -> None:
    """Answer each desired state of one of ``nodes`` with its actual state."""
    async for message in client.messages:
        parts = message.topic.value.split("/")
        payload = message.payload
        if len(parts) != 5 or parts[3] not in nodes or not isinstance(payload, bytes):
            continue
        try:
            generation = int(json.loads(payload)["generation"])
        except (ValueError, KeyError, TypeError):
            continue
        node = parts[3]
        await client.publish(
            f"{ROOT}/{node}/actual", actual_json(node, generation), qos=1, retain=True
        )
        stats["actual"] += 1


async def sim_connection(
    port: int, cid: str, nodes: list[str], *, interval: float, until: float, stats: dict[str, float]
) -> None:
    """One MQTT connection carrying ``nodes``: join them, each heartbeating once joined and
    answering its desired state."""
    username = os.environ.get("FOGMESH_USERNAME") or cid
    password = os.environ.get("FOGMESH_PASSWORD") or None
    async with aiomqtt.Client(
        "127.0.0.1",
        port,
        identifier=cid,
        username=username,
        password=password,
        max_queued_outgoing_messages=0,
    ) as client:
        client.pending_calls_threshold = 1000  # 100 QoS 1 publishes in flight is on purpose
        await client.subscribe(f"{ROOT}/+/desired", qos=1)
        joined: set[str] = set()
        beats = sim_beat(client, nodes, joined, interval=interval, until=until, stats=stats)
        answers = asyncio.create_task(sim_answer(client, set(nodes), stats))
        try:
            await asyncio.gather(sim_join(client, nodes, joined), beats)
        finally:
            answers.cancel()


async def sim_main(
    port: int, prefix: str, first: int, count: int, *, interval: float, until: float
) -> None:
    nodes = [f"{prefix}{i:06d}" for i in range(first, first + count)]
    stats = {"published": 0.0, "max_late_s": 0.0, "actual": 0.0}
    parts = [nodes[i::CONNS_PER_PROC] for i in range(CONNS_PER_PROC)]
    with contextlib.suppress(aiomqtt.MqttError):  # the broker stops first at the end
        await asyncio.gather(
            *(
                sim_connection(
                    port, f"sim-{prefix}{first}-{i}", p, interval=interval, until=until, stats=stats
                )
                for i, p in enumerate(parts)
                if p
            )
        )
    print(json.dumps(stats), flush=True)


def main(argv: list[str]) -> None:
    port, prefix, first, count, interval, until = argv
    asyncio.run(
        sim_main(
            int(port), prefix, int(first), int(count), interval=float(interval), until=float(until)
        )
    )


if __name__ == "__main__":
    main(sys.argv[1:7])
