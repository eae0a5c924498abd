"""``fogmesh-agent``: run the node agent.

    fogmesh-agent --config /etc/fogmesh/agent.yaml
    fogmesh-agent --node-id n1 --broker-host 10.0.0.2 --broker-port 1883 --state-dir /var/lib/fa

Flags override the file; see :mod:`fogmesh.agent.config` for every setting.

This module imports little at its top so that :func:`main` can keep out of the process what
the agent never uses before anything else is loaded (docs/agent.md, "Memory").
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fogmesh.agent.config import AgentConfig

__all__ = ["PLUGIN_SWITCH", "build_parser", "config_from_args", "keep_out_unused_extras", "main"]

UNUSED_EXTRAS = ("rich", "socks")
"""Packages the agent never uses that a dependency would import merely because they are
installed: structlog loads ``rich`` (5-6 MB resident) for pretty console tracebacks, paho
``socks`` (PySocks, 0.2 MB) for SOCKS proxies the bus never configures. Neither is a dependency
of the agent (``rich`` is the ``fogmesh`` CLI's)."""
PLUGIN_SWITCH = "PYDANTIC_DISABLE_PLUGINS"
"""pydantic's switch for the plugins it finds by scanning every installed distribution's entry
points at the first validator: the agent uses none, and the scan costs 0.1-0.2 MB resident. A
value already set (an empty one turns plugins back on) is left as it is."""


def keep_out_unused_extras() -> None:
    """Make :data:`UNUSED_EXTRAS` unimportable in this process, if nothing has loaded them yet,
    turn pydantic's plugins off (:data:`PLUGIN_SWITCH`) and defer the standard library's modules
    of :data:`fogmesh.agent.deferred.DEFERRED` to their first use.

    Called first by :func:`main`, the process's entry point, before structlog and paho are
    imported: structlog then renders exceptions as plain text (the same as an agent installed
    without the CLI), paho goes without SOCKS support, as without PySocks. A process that has
    already imported structlog (a test calling :func:`main`) is left as it is.
    """
    if "structlog" in sys.modules:
        return
    os.environ.setdefault(PLUGIN_SWITCH, "__all__")
    for name in UNUSED_EXTRAS:
        if name not in sys.modules:
            sys.modules[name] = None  # type: ignore[assignment]  # import then raises ImportError
    from fogmesh.agent.deferred import DEFERRED, defer

    for module, functions in DEFERRED.items():
        defer(module, functions)


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser."""
    from fogmesh.service import add_broker_arguments

    p = argparse.ArgumentParser(prog="fogmesh-agent", description="fogmesh node agent")
    p.add_argument("--config", type=Path, help="YAML or JSON configuration file")
    p.add_argument("--node-id", help="node id (default {hostname}-{MAC})")
    add_broker_arguments(p, client_id_help="MQTT client id (default {node}-agent)")
    p.add_argument("--state-dir", type=Path)
    p.add_argument(
        "--join-token",
        default=os.environ.get("FOGMESH_JOIN_TOKEN"),
        help="redeem this token (fogmesh node token) for the node's own credential, kept 0600"
        " in the state dir (env FOGMESH_JOIN_TOKEN)",
    )
    p.add_argument(
        "--discover",
        action="store_true",
        default=None,
        help="find the site broker by mDNS (docs/agent.md); its host and port win",
    )
    p.add_argument("--trust-site", help="with --discover: prefer this site's broker")
    p.add_argument(
        "--trust-fingerprint", help="with --discover: only a broker whose certificate has it"
    )
    p.add_argument("--heartbeat", type=float, help="heartbeat interval, seconds")
    p.add_argument("--reconcile-interval", type=float, help="reconcile timer, seconds")
    p.add_argument("--stop-timeout", type=float, help="seconds between SIGTERM and SIGKILL")
    p.add_argument("--retry-base", type=float, help="first failure back-off, seconds")
    p.add_argument("--label", action="append", default=[], metavar="K=V")
    p.add_argument("--lat", type=float)
    p.add_argument("--lon", type=float)
    p.add_argument("--gpio", action="append", default=[], metavar="PATH")
    p.add_argument("--runtimes", help="comma-separated: docker,native")
    p.add_argument("--container-prefix", help="container name prefix (default fm-{node}-)")
    p.add_argument(
        "--extra-label",
        action="append",
        default=[],
        metavar="K=V",
        help="label put on every Docker object the agent creates",
    )
    p.add_argument("--allow-operator-commands", action="store_true", default=None)
    p.add_argument("--log-level")
    p.add_argument("--print-config", action="store_true", help="print the config and exit")
    return p


def _pairs(items: list[str], flag: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"{flag} wants KEY=VALUE, not {item!r}")
        out[key] = value
    return out


def config_from_args(args: argparse.Namespace) -> AgentConfig:
    """Defaults < ``--config`` file < flags."""
    from fogmesh.agent.config import load_config
    from fogmesh.service import broker_flags

    over: dict[str, Any] = {}
    broker = broker_flags(args)
    if broker:
        over["broker"] = broker
    for flag, key in (
        ("node_id", "node_id"),
        ("state_dir", "state_dir"),
        ("heartbeat", "heartbeat_interval_s"),
        ("reconcile_interval", "reconcile_interval_s"),
        ("stop_timeout", "stop_timeout_s"),
        ("retry_base", "retry_base_s"),
        ("container_prefix", "container_prefix"),
        ("allow_operator_commands", "allow_operator_commands"),
        ("log_level", "log_level"),
    ):
        value = getattr(args, flag)
        if value is not None:
            over[key] = value
    discovery = {
        key: value
        for key, value in (
            ("enabled", args.discover),
            ("site", args.trust_site),
            ("fingerprint", args.trust_fingerprint),
        )
        if value is not None
    }
    if discovery:
        over["discovery"] = discovery
    if args.label:
        over["labels"] = _pairs(args.label, "--label")
    if args.extra_label:
        over["extra_labels"] = _pairs(args.extra_label, "--extra-label")
    if (args.lat is None) != (args.lon is None):
        raise SystemExit("--lat and --lon go together")
    if args.lat is not None:
        over["location"] = {"lat": args.lat, "lon": args.lon}
    if args.gpio:
        over["gpio"] = args.gpio
    if args.runtimes is not None:
        over["runtimes"] = [r.strip() for r in args.runtimes.split(",") if r.strip()]
    return load_config(args.config, over)


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``fogmesh-agent`` and ``python -m fogmesh.agent``."""
    keep_out_unused_extras()
    import asyncio

    from pydantic import ValidationError

    args = build_parser().parse_args(argv)
    try:
        config = config_from_args(args)
    except (ValidationError, ValueError, OSError) as exc:
        sys.stderr.write(f"fogmesh-agent: bad configuration: {exc}\n")
        raise SystemExit(2) from exc
    if args.print_config:
        sys.stdout.write(json.dumps(config.model_dump(mode="json"), indent=2) + "\n")
        return
    from fogmesh.agent.join import JoinFailed, prepare
    from fogmesh.agent.service import Agent
    from fogmesh.service import configure_logging, serve

    configure_logging(config.log_level)
    if config.discovery.enabled:
        from fogmesh.agent.discovery import DiscoveryFailed, discover_broker

        try:
            config = asyncio.run(discover_broker(config))
        except DiscoveryFailed as exc:
            sys.stderr.write(f"fogmesh-agent: {exc}\n")
            raise SystemExit(3) from exc
    try:  # a stored credential, else one redeemed from --join-token, else the broker block's
        config = asyncio.run(prepare(config, args.join_token))
    except JoinFailed as exc:
        sys.stderr.write(f"fogmesh-agent: {exc}\n")
        raise SystemExit(3) from exc
    agent = Agent(config)
    serve(agent.run)
