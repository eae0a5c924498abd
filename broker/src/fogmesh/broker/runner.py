"""Run one site: its embedded broker and the links it owns, in one process, until SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from pathlib import Path

from fogmesh.broker.announce import announce
from fogmesh.broker.config import MeshConfigError, MeshSpec, ResolvedEndpoint
from fogmesh.broker.link import Link, Side
from fogmesh.broker.server import MeshBroker, amqtt_config

__all__ = ["build_links", "run_site"]

log = logging.getLogger(__name__)


def data_dir_of(mesh: MeshSpec, name: str) -> Path:
    """Where broker ``name`` keeps its state (sessions, retained, link queues)."""
    return mesh.brokers[name].data_dir or Path(f"./fogmesh-{name}")


def build_links(mesh: MeshSpec, name: str) -> list[Link]:
    """The :class:`Link` objects that broker ``name``'s process runs."""
    links = []
    for spec in mesh.links_of(name):
        ends: dict[Side, ResolvedEndpoint] = {
            "local": mesh.resolve(spec.local, default_broker=name),
            "remote": mesh.resolve(spec.remote),
        }
        links.append(Link(name, spec, ends, data_dir_of(mesh, name), mesh.resolve_paths(spec)))
    return links


async def run_site(
    mesh: MeshSpec,
    name: str,
    *,
    broker: bool = True,
    links: bool = True,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve broker ``name`` (if it is an amqtt broker) and run its links until ``stop``/SIGTERM."""
    if name not in mesh.brokers:
        raise MeshConfigError(f"no broker {name!r} in the mesh file")
    spec = mesh.brokers[name]
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    server: MeshBroker | None = None
    if broker and spec.kind == "amqtt":
        server = MeshBroker(amqtt_config(name, spec), split_horizon=spec.split_horizon, name=name)
        await server.start()
        log.info(
            "broker %s listening on %s",
            name,
            ", ".join(f"{lst.type}://{lst.host}:{lst.port}" for lst in spec.listeners),
        )
    running = build_links(mesh, name) if links else []
    try:
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(link.run(), name=f"link-{link.spec.name}") for link in running]
            if broker and spec.announce is not None and spec.announce.enabled:
                # ends by itself once stop is set (withdrawing the record), so not cancelled
                tg.create_task(announce(name, spec, stop), name="announce")
            print(f"ready {name}", flush=True)  # noqa: T201 - tests and scripts wait for this line
            await stop.wait()
            for task in tasks:
                task.cancel()
            # the TaskGroup awaits the cancelled links before leaving
    finally:
        if server is not None:
            await server.shutdown()
