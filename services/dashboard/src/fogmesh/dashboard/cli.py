"""``fogmesh-dashboard`` (and ``python -m fogmesh.dashboard``): serve the page until SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from pydantic import ValidationError

from fogmesh.dashboard.server import DashboardServer, DashboardSettings, missing_assets
from fogmesh.service import BrokerSettings, configure_logging

__all__ = ["main", "parse_address", "serve_dashboard"]

SETUP_HINT = "run `bash .ci/dashboard.sh` (it copies the pinned browser libraries in from npm)"


def parse_address(text: str) -> tuple[str, int]:
    """``host:port`` -> ``(host, port)``; a ValueError names the bad text."""
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected host:port, not {text!r}")
    return host, int(port)


async def serve_dashboard(
    server: DashboardServer, *, on_ready: Callable[[str], None] | None = None
) -> None:
    """Run ``server`` until SIGINT or SIGTERM; ``on_ready(url)`` once it listens."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    if on_ready is not None:
        on_ready(server.url)
    async with asyncio.TaskGroup() as tasks:
        serving = tasks.create_task(server.run())
        await stop.wait()
        serving.cancel()


def main(argv: list[str] | None = None) -> None:
    """Parse the flags, check the browser libraries are there, serve."""
    parser = argparse.ArgumentParser(prog="fogmesh-dashboard", description=__doc__)
    parser.add_argument("--broker", default="127.0.0.1:1883", help="the broker's TCP listener")
    parser.add_argument("--listen", default="127.0.0.1:8080", help="where the page is served")
    parser.add_argument("--tls", action="store_true", help="TLS to the broker")
    parser.add_argument("--ca-file", type=Path, help="CA for the broker's certificate")
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    try:
        broker_host, broker_port = parse_address(args.broker)
        host, port = parse_address(args.listen)
        tls = BrokerSettings(
            tls=args.tls or args.ca_file is not None, ca_file=args.ca_file
        ).ssl_context()
    except (ValueError, ValidationError, OSError) as exc:
        sys.exit(f"fogmesh-dashboard: {exc}")
    if missing := missing_assets():
        sys.exit(f"fogmesh-dashboard: missing {', '.join(missing)}: {SETUP_HINT}")
    settings = DashboardSettings(
        broker_host=broker_host, broker_port=broker_port, host=host, port=port, broker_tls=tls
    )

    def ready(url: str) -> None:
        print(f"dashboard: {url}", flush=True)  # noqa: T201 -- the one line a person needs

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve_dashboard(DashboardServer(settings), on_ready=ready))
