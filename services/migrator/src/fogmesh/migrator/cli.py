"""``fogmesh-migrator``: run the migrator until SIGTERM / SIGINT."""

from __future__ import annotations

import argparse
from pathlib import Path

from fogmesh.migrator.config import MigratorConfig
from fogmesh.migrator.service import MigratorService
from fogmesh.service import add_broker_arguments, broker_flags, configure_logging, serve

__all__ = ["load_config", "main", "parse_args"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(prog="fogmesh-migrator", description=__doc__)
    parser.add_argument("--config", type=Path, help="YAML settings file (see docs/migrator.md)")
    add_broker_arguments(parser, client_id_help="MQTT client id and lease holder")
    parser.add_argument("--log-level", default="info")
    return parser.parse_args(argv)


def load_config(args: argparse.Namespace) -> MigratorConfig:
    """Settings from the file (if any) with the command line on top."""
    broker = broker_flags(args)
    # the migrator's client id is its own setting (the lease holder), not the broker block's
    overrides = {"broker": broker, "client_id": broker.pop("client_id", None)}
    if args.config is not None:
        return MigratorConfig.from_file(args.config, **overrides)
    return MigratorConfig.merged({}, **overrides)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``fogmesh-migrator`` console script."""
    args = parse_args(argv)
    configure_logging(args.log_level)
    serve(MigratorService(load_config(args)).run)
