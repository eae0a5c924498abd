"""A triangle of brokers joined by ``both`` rules: each message once per subscriber, no loop."""

from __future__ import annotations

import asyncio
import collections
from pathlib import Path

import aiomqtt

from tests.support.mesh import MeshProcess
from tests.support.mesh_file import broker_spec, link_spec, port_of, write_mesh
from tests.support.mqtt import client, collect, wait_for

RULE = [{"pattern": "tri/#", "direction": "both", "qos": 1}]
NAMES = ["a", "b", "c"]
PER_BROKER = 20


async def test_triangle_of_both_links(tmp_path: Path, procs: list[MeshProcess]) -> None:
    mesh = write_mesh(
        tmp_path / "mesh.yaml",
        {n: broker_spec(tmp_path, n) for n in NAMES},
        [
            link_spec("ab", "a", "b", RULE),
            link_spec("bc", "b", "c", RULE),
            link_spec("ca", "c", "a", RULE),
        ],
    )
    for n in NAMES:
        procs.append(MeshProcess(mesh, n).start())
    ports = {n: port_of(mesh, n) for n in NAMES}
    got: dict[str, list[aiomqtt.Message]] = {n: [] for n in NAMES}

    async with client(ports["a"]) as ca, client(ports["b"]) as cb, client(ports["c"]) as cc:
        subs = {"a": ca, "b": cb, "c": cc}
        tasks = []
        for n, c in subs.items():
            await c.subscribe("tri/#", qos=1)
            tasks.append(asyncio.create_task(collect(c, got[n])))
        # wait until all six link sides are up: a probe from every broker reaches every broker
        for n in NAMES:
            probe = f"probe-{n}".encode()

            def seen_everywhere(p: bytes = probe) -> bool:
                return all(any(m.payload == p for m in got[x]) for x in NAMES)

            for _ in range(120):
                await subs[n].publish(f"tri/probe/{n}", probe, qos=1)
                try:
                    await wait_for(seen_everywhere, timeout=0.5)
                    break
                except AssertionError:
                    continue
            else:
                raise AssertionError(f"links never came up from {n}")
        await asyncio.sleep(2.0)  # let stray probe copies settle
        for lst in got.values():
            lst.clear()

        for n, c in subs.items():
            for i in range(PER_BROKER):
                await c.publish(f"tri/data/{n}", f"{n}-{i}".encode(), qos=1)
        total = len(NAMES) * PER_BROKER
        await wait_for(
            lambda: all(len(got[n]) >= total for n in NAMES),
            timeout=60,
            what="every message at every broker",
        )
        await asyncio.sleep(3.0)  # a loop would keep adding copies now
        for t in tasks:
            t.cancel()

    for n in NAMES:
        counts = collections.Counter(bytes(m.payload) for m in got[n])
        assert len(counts) == total, f"{n} missed messages"
        extra = {p: k for p, k in counts.items() if k > 1}
        assert not extra, f"{n} got copies: {list(extra.items())[:5]}"
