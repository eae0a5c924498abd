"""The agent's WAN traffic for ``bench/agent.py``: a TCP relay between agent and broker that
counts the bytes each way on the wire (MQTT framing, keep-alives and PUBACKs included), and the
``wan`` section of the results those counts make."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from agent_deploy import MANY
from agent_spawn import free_port

__all__ = ["CountingProxy", "wan_section"]


class CountingProxy:
    """A TCP relay that counts the bytes each way (the agent's "WAN" link)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.up = 0  # agent -> broker
        self.down = 0  # broker -> agent
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, upward: bool) -> None:
            with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                while data := await src.read(65536):
                    if upward:
                        self.up += len(data)
                    else:
                        self.down += len(data)
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pump(reader, up_writer, True), pump(up_reader, writer, False))

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()


def wan_section(
    idle_s: float, idle: tuple[int, int], many_s: float, many: tuple[int, int]
) -> dict[str, Any]:
    """The ``wan`` section of the results: the bytes (up, down) counted over the idle window of
    ``idle_s`` seconds and over ``many_s`` seconds with :data:`MANY` workloads, per hour."""
    idle_up, idle_down = idle
    many_up, many_down = many
    per_hour = 3600.0 / idle_s
    return {
        "idle_window_s": idle_s,
        "heartbeat_interval_s": 5.0,
        "idle_up_bytes": idle_up,
        "idle_down_bytes": idle_down,
        "idle_up_bytes_per_hour": round(idle_up * per_hour),
        "idle_total_bytes_per_hour": round((idle_up + idle_down) * per_hour),
        f"with_{MANY}_workloads_window_s": many_s,
        f"with_{MANY}_workloads_up_bytes_per_hour": round(many_up * 3600 / many_s),
        f"with_{MANY}_workloads_total_bytes_per_hour": round((many_up + many_down) * 3600 / many_s),
    }
