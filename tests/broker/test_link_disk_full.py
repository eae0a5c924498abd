"""A link whose disk is full drops its connection and tries again; it does not stop the broker.

The site link's data dir is a small tmpfs the test mounts (root only) and fills: the link's disk
queue cannot commit what it reads, so it acknowledges nothing and reconnects with back-off
(the broker delivers again); once space is freed the messages cross, in order, none lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import pytest

from fogmesh.broker.config import load_mesh
from fogmesh.broker.runner import build_links
from tests.support.mesh import MeshProcess
from tests.support.mesh_file import PASSWORDS, broker_spec, link_spec, port_of, write_mesh


@contextlib.contextmanager
def small_disk(where: Path) -> Iterator[Path]:
    where.mkdir(parents=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(where)],
        capture_output=True, check=False, timeout=30,
    )  # fmt: skip
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False, timeout=30)


def fill(disk: Path) -> Path:
    """Fill ``disk`` to the last byte (a file of zeros); remove the file to free it."""
    filler = disk / "filler"
    with contextlib.suppress(OSError), filler.open("wb") as out:
        while True:
            out.write(b"\0" * 4096)
            out.flush()
    return filler


async def test_a_full_disk_drops_the_connection_not_the_link(tmp_path: Path) -> None:
    with small_disk(tmp_path / "site" / "links") as disk:  # the link's own state only
        rules = [{"pattern": "tele/#", "direction": "out", "qos": 1}]
        brokers = {"site": broker_spec(tmp_path, "site"), "cloud": broker_spec(tmp_path, "cloud")}
        mesh = write_mesh(
            tmp_path / "mesh.yaml", brokers, [link_spec("wan", "site", "cloud", rules)]
        )
        procs = [MeshProcess(mesh, b, ["--no-links"]).start() for b in ("site", "cloud")]
        try:
            [link] = build_links(load_mesh(mesh), "site")
            run = asyncio.create_task(link.run())
            got: list[bytes] = []
            cloud = aiomqtt.Client(
                "127.0.0.1", port_of(mesh, "cloud"), username="svc", password=PASSWORDS["svc"]
            )
            site = aiomqtt.Client(
                "127.0.0.1", port_of(mesh, "site"), username="svc", password=PASSWORDS["svc"]
            )
            async with cloud, site:
                await cloud.subscribe("tele/#", qos=1)

                async def receive() -> None:
                    async for m in cloud.messages:
                        got.append(bytes(m.payload))

                receiving = asyncio.create_task(receive())
                async with asyncio.timeout(60):
                    while not (link.connected["local"] and link.connected["remote"]):
                        await asyncio.sleep(0.1)
                filler = fill(disk)
                sent = [f"m{i}".encode() for i in range(20)]
                for payload in sent:
                    await site.publish("tele/x", payload, qos=1)
                async with asyncio.timeout(60):
                    while "disk" not in link.last_error.lower() and "full" not in link.last_error:
                        assert not run.done(), run
                        await asyncio.sleep(0.1)
                for _ in range(70):  # reconnects, a status period: still full, still running
                    assert not run.done(), run
                    await asyncio.sleep(0.1)
                assert not got  # nothing committed, nothing crossed
                filler.unlink()
                async with asyncio.timeout(90):
                    while got != sent:
                        assert not run.done(), run
                        await asyncio.sleep(0.1)
                receiving.cancel()
            run.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await run
        finally:
            for p in procs:
                p.kill()
