"""The shared reader: one reader per streamed device (a serial sensor several apps read).

The operator lists a device in the node config's ``device_streams``. The agent then opens it
itself (one reader, so no two workloads steal each other's lines) and publishes each line it
reads, as raw bytes without the newline, for every app on the node whose workload asked for
the device: on ``fm/v1/devices/{tenant}/{app}/{node}/{device}`` (``.../edge-1/ttyUSB0``). The
workload is not given the device node itself; it subscribes to its app's readings from its own
node (``FOGMESH_NODE``). The broker lets a node publish there only under its own name and a
tenant read only its own (docs/devices.md, docs/security.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import termios
from collections.abc import Awaitable, Callable, Iterable

import structlog

from fogmesh.agent.devices import DeviceCatalog, container_path
from fogmesh.protocol import topics
from fogmesh.protocol.node import DeviceInfo
from fogmesh.protocol.workload import WorkloadSpec

__all__ = ["MAX_LINE", "DeviceReader", "reading_name"]

log = structlog.get_logger(__name__)

MAX_LINE = 4096
"""A line longer than this (a sensor babbling without newlines) is dropped, not buffered."""


def reading_name(info: DeviceInfo) -> str:
    """The last level of a streamed device's readings topic: its node's name (``ttyUSB0``)."""
    return container_path(info).removeprefix("/dev/")


class DeviceReader:
    """Reads each streamed device present and publishes its lines to its holders' apps.

    ``node`` is this node's id (the readings' topics carry it); ``holders`` gives the workloads
    on the node now (their specs' ``devices`` say who asked for what); ``publish`` sends one
    raw payload to a topic. Devices are looked for every
    ``poll_s``: one that appears (hot-plug) gets a reader, one that goes ends its reader.
    """

    def __init__(
        self,
        catalog: DeviceCatalog,
        node: str,
        holders: Callable[[], Iterable[WorkloadSpec]],
        publish: Callable[[str, bytes], Awaitable[None]],
        *,
        poll_s: float = 1.0,
    ) -> None:
        self._catalog = catalog
        self._node = node
        self._holders = holders
        self._publish = publish
        self._poll_s = poll_s

    async def run(self) -> None:
        """Forever: keep one reading task per streamed device present."""
        reading: dict[str, asyncio.Task[None]] = {}
        async with asyncio.TaskGroup() as group:
            while True:
                infos = await asyncio.to_thread(self._catalog.scan)
                for info in infos:
                    task = reading.get(info.name)
                    if self._catalog.streams(info) and (task is None or task.done()):
                        reading[info.name] = group.create_task(self._read(info))
                await asyncio.sleep(self._poll_s)

    def _topics(self, info: DeviceInfo) -> list[str]:
        """One readings topic per app on the node holding ``info`` (replicas share it)."""
        apps = {
            (spec.tenant, spec.app)
            for spec in self._holders()
            if any(info.answers(request) for request in spec.devices)
        }
        name = reading_name(info)
        return [
            topics.device_reading(tenant, app, self._node, name) for tenant, app in sorted(apps)
        ]

    async def _read(self, info: DeviceInfo) -> None:
        try:
            fd = os.open(info.path, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)
        except OSError as exc:
            log.warning("streamed device cannot be opened", device=info.name, error=str(exc))
            return
        with contextlib.suppress(termios.error):  # a tty: no echo back to the sensor
            attrs = termios.tcgetattr(fd)
            attrs[3] &= ~termios.ECHO
            termios.tcsetattr(fd, termios.TCSANOW, attrs)
        loop = asyncio.get_running_loop()
        ready = asyncio.Event()
        loop.add_reader(fd, ready.set)
        log.info("reading streamed device", device=info.name, path=info.path)
        pending = b""
        try:
            while True:
                await ready.wait()
                ready.clear()
                try:
                    chunk = os.read(fd, 65536)
                except BlockingIOError:
                    continue
                except OSError:
                    chunk = b""  # EIO: the other end (a pty's master, a USB adapter) is gone
                if not chunk:
                    log.info("streamed device closed", device=info.name)
                    return
                *lines, pending = (pending + chunk).split(b"\n")
                if len(pending) > MAX_LINE:
                    pending = b""
                for line in lines:
                    await self._send(info, line.rstrip(b"\r"))
        finally:
            loop.remove_reader(fd)
            os.close(fd)

    async def _send(self, info: DeviceInfo, line: bytes) -> None:
        if not line or len(line) > MAX_LINE:
            return
        for topic in self._topics(info):
            try:
                await self._publish(topic, line)
            except Exception:  # noqa: BLE001 -- one lost reading must not end the reader
                log.warning("publishing a reading failed", device=info.name, topic=topic)
