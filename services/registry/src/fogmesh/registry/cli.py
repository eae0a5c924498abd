"""``fogmesh-registry``: run the registry from the command line."""

from __future__ import annotations

import argparse
import os
import socket
import sys

from fogmesh.registry.service import Registry
from fogmesh.registry.settings import DEFAULT_DB_URL, SHARE_BY, RegistrySettings
from fogmesh.service import (
    BrokerSettings,
    add_broker_arguments,
    broker_env,
    broker_flags,
    configure_logging,
    serve,
)

__all__ = ["SWITCH_INTERVAL_S", "main", "parse_args"]

SWITCH_INTERVAL_S = 0.0005
"""The registry process's GIL switch interval (Python's default: 5 ms).

The event loop gives up the GIL at every system call (each read of the broker's socket) and
waits for it again while the writer thread runs Python (a batch's parameters): up to one switch
interval each time. Beside a busy writer the loop so took 836 heartbeats a second at 5 ms and
3,338 at 0.5 ms (a 10,000-message backlog, a CPU-bound second thread, load 9): a join storm's
writes held the ingest of heartbeats to a few dozen a second on PostgreSQL."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; the broker options also read ``FOGMESH_*`` environment variables
    (:data:`fogmesh.service.BROKER_ENV`), as do ``--db``, ``--missed`` and ``--log-level``."""
    env = os.environ.get
    p = argparse.ArgumentParser(prog="fogmesh-registry", description=__doc__)
    add_broker_arguments(p, client_id_help="MQTT client id (default registry-{hostname})")
    p.add_argument("--db", default=env("FOGMESH_REGISTRY_DB", DEFAULT_DB_URL), help="SQL URL")
    p.add_argument("--missed", type=float, default=float(env("FOGMESH_REGISTRY_MISSED", "3")))
    p.add_argument("--default-interval", type=float, default=10.0)
    p.add_argument("--batch-interval", type=float, default=0.15)
    p.add_argument("--batch-max", type=int, default=2000)
    p.add_argument("--history", type=int, default=30)
    p.add_argument(
        "--share",
        default=env("FOGMESH_REGISTRY_SHARE") or None,
        help="replicas: the shared-subscription group of the registries of one database",
    )
    p.add_argument(
        "--share-by",
        choices=SHARE_BY,
        default=env("FOGMESH_REGISTRY_SHARE_BY", "broker"),
        help="replicas: who splits the fleet, the broker's $share subscriptions (Mosquitto 2,"
        " the embedded broker) or the registries by node id (NATS 2.9: no $share)",
    )
    p.add_argument("--log-level", default=env("FOGMESH_LOG_LEVEL", "info"))
    return p.parse_args(argv)


def settings_from(args: argparse.Namespace) -> RegistrySettings:
    """Settings from parsed arguments (broker: the environment, then the flags)."""
    broker = BrokerSettings.model_validate({**broker_env(os.environ), **broker_flags(args)})
    default_id = f"registry-{socket.gethostname().split('.')[0]}".replace("+", "-")
    return RegistrySettings(
        bus=broker.bus_config(default_id),
        db_url=args.db,
        missed=args.missed,
        default_interval=args.default_interval,
        batch_interval=args.batch_interval,
        batch_max=args.batch_max,
        history_size=args.history,
        share=args.share,
        share_by=args.share_by,
    )


def main(argv: list[str] | None = None) -> None:
    """Run the registry until SIGTERM / SIGINT."""
    args = parse_args(argv)
    configure_logging(args.log_level)
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    registry = Registry(settings_from(args))
    serve(registry.run)
