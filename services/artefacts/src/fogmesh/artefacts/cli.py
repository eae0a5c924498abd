"""``fogmesh-artefacts store|cache``: run the store (cloud) or a site's cache until SIGTERM."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from fogmesh.artefacts.cache import CacheService
from fogmesh.artefacts.config import CacheConfig, StoreConfig
from fogmesh.artefacts.store import StoreService
from fogmesh.service import add_broker_arguments, broker_flags, configure_logging, serve

__all__ = ["main", "parse_args"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(prog="fogmesh-artefacts", description=__doc__)
    parser.add_argument("mode", choices=["store", "cache"])
    parser.add_argument("--config", type=Path, help="YAML settings file (docs/artefacts.md)")
    parser.add_argument("--data-dir", type=Path, help="where blobs are kept")
    parser.add_argument("--site", help="cache: the site it serves")
    parser.add_argument("--http-host", help="cache: the download server's address")
    parser.add_argument("--http-port", type=int, help="cache: the download server's port")
    parser.add_argument("--advertise-host", help="cache: the host nodes download from")
    add_broker_arguments(parser, client_id_help="MQTT client id")
    parser.add_argument("--log-level", default="info")
    return parser.parse_args(argv)


def _settings(args: argparse.Namespace) -> StoreConfig | CacheConfig:
    broker = broker_flags(args)
    overrides: dict[str, Any] = {
        "broker": broker,
        "client_id": broker.pop("client_id", None),
        "data_dir": args.data_dir,
    }
    model: type[StoreConfig | CacheConfig] = StoreConfig
    if args.mode == "cache":
        model = CacheConfig
        overrides |= {
            "site": args.site,
            "http_host": args.http_host,
            "http_port": args.http_port,
            "advertise_host": args.advertise_host,
        }
    if args.config is not None:
        return model.from_file(args.config, **overrides)
    return model.merged({}, **overrides)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``fogmesh-artefacts`` console script."""
    args = parse_args(argv)
    configure_logging(args.log_level)
    config = _settings(args)
    if isinstance(config, CacheConfig):
        serve(CacheService(config).run)
    else:
        serve(StoreService(config).run)
