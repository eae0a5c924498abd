"""The ``fogmesh`` command line: one entry point for people.

Every command that talks to the fleet goes through the bus like any other client; a broker
that cannot be reached is one line on stderr and a non-zero exit, never a traceback. This
module holds the global options and the entry point; each group of commands lives in a
module of its own (listings, apps, workloads, migrations, passthrough, accounts, artefacts,
dashboard, fleet), and its help lists them in the order they are added here.
"""

from __future__ import annotations

import dataclasses
import os
import ssl
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from fogmesh.cli import apps, context, listings, migrations, passthrough, workloads
from fogmesh.cli.errors import CliError
from fogmesh.cli.session import CliSettings
from fogmesh.protocol import BusError, ContractError, RemoteError, error_info_from_validation
from fogmesh.service import TLS_SETTINGS, BrokerSettings, configure_logging

__all__ = ["app", "main"]

app = typer.Typer(
    name="fogmesh",
    help="fogmesh: place, run and keep alive microservices on a fleet of edge nodes.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _global(
    ctx: typer.Context,
    *,
    broker: Annotated[
        str | None, typer.Option(help="host:port of the broker (env FOGMESH_BROKER)")
    ] = None,
    tenant: Annotated[
        str | None, typer.Option(help="act as this tenant (env FOGMESH_TENANT)")
    ] = None,
    timeout: Annotated[float, typer.Option(help="seconds to wait for each answer")] = 10.0,
    tls: Annotated[
        bool | None, typer.Option("--tls", help="connect with TLS (env FOGMESH_BROKER_TLS)")
    ] = None,
    ca_file: Annotated[
        Path | None, typer.Option(help="CA bundle for the broker's certificate (implies --tls)")
    ] = None,
) -> None:
    """Options every command shares."""
    if broker:
        os.environ["FOGMESH_BROKER"] = broker
    settings = CliSettings.from_env()
    tls_options = settings.broker.model_dump(include=set(TLS_SETTINGS), exclude_unset=True)
    if tls or ca_file is not None:
        tls_options["tls"] = True
    if ca_file is not None:
        tls_options["ca_file"] = ca_file
    try:
        broker_settings = BrokerSettings.model_validate(tls_options)
        broker_settings.ssl_context()  # unreadable certificate files: one sentence, now
    except ValidationError as exc:
        raise CliError(
            f"bad broker settings: {error_info_from_validation(exc).message}", code=2
        ) from exc
    except (OSError, ssl.SSLError) as exc:
        raise CliError(f"bad TLS settings: {exc}", code=2) from exc
    ctx.obj = dataclasses.replace(
        settings, tenant=tenant or settings.tenant, timeout=timeout, broker=broker_settings
    )


def _register() -> None:
    """Every command, in the order the help lists them."""
    from fogmesh.cli.accounts import account_app, node_app, tenant_app
    from fogmesh.cli.artefacts import artefacts_app, push
    from fogmesh.cli.dashboard import dashboard
    from fogmesh.cli.fleet.command import up
    from fogmesh.cli.fleet.remote import fleet_app

    for group in (listings, apps, workloads, migrations, passthrough):
        group.register(app)
    app.command(name="up")(up)
    app.add_typer(fleet_app)
    app.add_typer(tenant_app, name="tenant")
    app.add_typer(account_app, name="account")
    app.add_typer(node_app, name="node")
    app.command(name="dashboard")(dashboard)
    app.command(name="push")(push)
    app.add_typer(artefacts_app, name="artefacts")


_register()


def main() -> None:
    """Entry point: run the app, turning every expected failure into one line."""
    configure_logging(os.environ.get("FOGMESH_LOG_LEVEL", "warning"))
    try:
        app(standalone_mode=False)
    except CliError as exc:
        context.err.print(f"[red]error:[/] {exc.message}", highlight=False)
        sys.exit(exc.code)
    except RemoteError as exc:
        context.err.print(
            f"[red]refused ({exc.code.value}):[/] {exc.error.message}", highlight=False
        )
        details: dict[str, Any] = exc.error.details
        for node, reason in sorted(details.get("reasons", {}).items())[:20]:
            context.err.print(f"  {node}: {reason}", highlight=False)
        sys.exit(5)
    except (BusError, ContractError) as exc:
        context.err.print(f"[red]error:[/] {exc}", highlight=False)
        sys.exit(3)
    except (typer.Abort, KeyboardInterrupt):
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.TyperException as exc:  # usage errors: bad option, missing argument
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        else:
            context.err.print(f"[red]error:[/] {exc}", highlight=False)
        sys.exit(int(getattr(exc, "exit_code", 2)))
