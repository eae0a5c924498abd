"""``fogmesh-scheduler``: run the scheduler until SIGTERM / SIGINT."""

from __future__ import annotations

import argparse
from pathlib import Path

from fogmesh.scheduler.config import SchedulerConfig
from fogmesh.scheduler.service import SchedulerService
from fogmesh.service import add_broker_arguments, broker_flags, configure_logging, serve

__all__ = ["main", "parse_args"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(prog="fogmesh-scheduler", description=__doc__)
    parser.add_argument("--config", type=Path, help="YAML settings file (see docs/scheduler.md)")
    add_broker_arguments(parser, client_id_help="MQTT client id and lease holder")
    parser.add_argument("--state-dir", dest="state_dir", type=Path, help="where state.json lives")
    parser.add_argument("--log-level", default="info")
    return parser.parse_args(argv)


def load_config(args: argparse.Namespace) -> SchedulerConfig:
    """Settings from the file (if any) with the command line on top."""
    broker = broker_flags(args)
    # the scheduler's client id is its own setting (the lease holder), not the broker block's
    overrides = {
        "broker": broker,
        "client_id": broker.pop("client_id", None),
        "state_dir": args.state_dir,
    }
    if args.config is not None:
        return SchedulerConfig.from_file(args.config, **overrides)
    return SchedulerConfig.merged({}, **overrides)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``fogmesh-scheduler`` console script."""
    args = parse_args(argv)
    configure_logging(args.log_level)
    config = load_config(args)
    serve(SchedulerService(config).run)
