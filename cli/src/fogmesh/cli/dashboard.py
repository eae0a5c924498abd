"""``fogmesh dashboard``: serve the web dashboard for the broker the CLI is pointed at.

The page is an MQTT client itself (``docs/dashboard.md``); this process only serves its files
and pipes its WebSocket to the broker's TCP listener, so the browser needs one address."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from typing import Annotated

import typer
from rich.console import Console

from fogmesh.cli.errors import CliError
from fogmesh.cli.session import CliSettings

__all__ = ["dashboard"]

console = Console()


def dashboard(
    ctx: typer.Context,
    listen: Annotated[
        str, typer.Option(help="host:port the page is served on (port 0: a free one)")
    ] = "127.0.0.1:8080",
) -> None:
    """Serve the web dashboard (log in with a broker account) until Ctrl-C."""
    settings = ctx.obj
    assert isinstance(settings, CliSettings)
    try:
        from fogmesh.dashboard import DashboardServer, DashboardSettings, missing_assets
        from fogmesh.dashboard.cli import SETUP_HINT, parse_address, serve_dashboard
    except ImportError as exc:
        raise CliError(
            "the dashboard is not installed (pip install -e services/dashboard)"
        ) from exc
    if missing := missing_assets():
        raise CliError(f"missing {', '.join(missing)}: {SETUP_HINT}", code=2)
    try:
        host, port = parse_address(listen)
        tls = settings.broker.ssl_context()
    except ValueError as exc:
        raise CliError(f"--listen: {exc}", code=2) from exc
    except (OSError, ssl.SSLError) as exc:
        raise CliError(f"bad TLS settings: {exc}", code=2) from exc
    server = DashboardServer(
        DashboardSettings(
            broker_host=settings.host,
            broker_port=settings.port,
            host=host,
            port=port,
            broker_tls=tls,
        )
    )

    def ready(url: str) -> None:
        console.print(f"dashboard: {url} (broker {settings.host}:{settings.port})", highlight=False)

    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve_dashboard(server, on_ready=ready))
    except OSError as exc:  # the port is taken, or the address is not ours
        raise CliError(f"cannot listen on {listen}: {exc.strerror or exc}", code=2) from exc
