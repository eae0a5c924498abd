"""``fogmesh-broker``: run a site's broker and links, render Mosquitto config, hash passwords."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import os
import sys
from pathlib import Path

from fogmesh.broker.config import MeshConfigError, load_mesh
from fogmesh.broker.mosquitto import DEFAULT_USER, render_mosquitto
from fogmesh.broker.nats import render_nats
from fogmesh.broker.passwords import hash_password
from fogmesh.broker.runner import run_site

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fogmesh-broker", description=__doc__)
    parser.add_argument("--log-level", default="WARNING", help="Python log level (default WARNING)")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="serve a broker of the mesh and run its links")
    run.add_argument("--mesh", type=Path, required=True, help="mesh description file (YAML)")
    run.add_argument("--broker", required=True, help="which broker of the mesh this process is")
    run.add_argument("--no-links", action="store_true", help="serve the broker only")
    run.add_argument(
        "--no-broker",
        action="store_true",
        help="run the links only (the broker runs elsewhere, e.g. Mosquitto)",
    )
    render = sub.add_parser("render-mosquitto", help="write an equivalent Mosquitto config")
    render.add_argument("--mesh", type=Path, required=True)
    render.add_argument("--broker", required=True)
    render.add_argument("--out", type=Path, required=True, help="output directory")
    render.add_argument(
        "--install-dir",
        type=Path,
        default=None,
        help="where the files will live on the broker (default: --out)",
    )
    render.add_argument(
        "--user",
        default=DEFAULT_USER,
        help="the user Mosquitto drops to when started as root (default: mosquitto)",
    )
    nats = sub.add_parser("render-nats", help="write a NATS cluster's member configs")
    nats.add_argument("--mesh", type=Path, required=True)
    nats.add_argument("--broker", required=True)
    nats.add_argument("--out", type=Path, required=True, help="output directory")
    nats.add_argument(
        "--members", type=int, default=None, help="members (default: the mesh's, else 3)"
    )
    accounts = sub.add_parser(
        "mosquitto-accounts",
        help="keep a Mosquitto broker's passwd and acl in step with the account records (SIGHUP)",
    )
    accounts.add_argument("--mesh", type=Path, required=True)
    accounts.add_argument("--broker", required=True)
    accounts.add_argument("--out", type=Path, required=True, help="where render-mosquitto wrote")
    accounts.add_argument("--pid-file", type=Path, required=True, help="mosquitto's pid file")
    accounts.add_argument("--user", default=DEFAULT_USER, help="the user Mosquitto drops to")
    accounts.add_argument("--host", default="127.0.0.1")
    accounts.add_argument("--port", type=int, default=None, help="default: its plain listener")
    accounts.add_argument("--username", required=True, help="a service account of the broker")
    accounts.add_argument(
        "--password-env", default="FOGMESH_PASSWORD", help="variable holding its password"
    )
    certs = sub.add_parser("make-certs", help="a fleet CA (made once) and a certificate it signs")
    certs.add_argument("--out", type=Path, required=True, help="directory of ca.pem, ca.key, ...")
    certs.add_argument("--name", default="broker", help="file name of the certificate")
    certs.add_argument(
        "--host", action="append", default=[], help="DNS name or IP it serves (repeatable)"
    )
    certs.add_argument("--client", action="store_true", help="a client certificate")
    hashp = sub.add_parser("hash-password", help="print a $7$ hash for a mesh file user")
    hashp.add_argument("--password", help="the password (default: prompt)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=str(args.log_level).upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        if args.command == "hash-password":
            print(hash_password(args.password or getpass.getpass()))  # noqa: T201
            return 0
        if args.command == "make-certs":
            from fogmesh.broker.certs import issue_cert, load_or_make_ca

            ca = load_or_make_ca(args.out)
            pair = issue_cert(
                ca, args.out, args.name, args.host or ["localhost"], client=args.client
            )
            for path in (ca.cert, pair.cert, pair.key):
                print(path)  # noqa: T201
            return 0
        mesh = load_mesh(args.mesh)
        mesh.require_broker(args.broker)
        if args.command == "mosquitto-accounts":
            from fogmesh.broker.mosquitto_accounts import MosquittoAccounts

            password = os.environ.get(args.password_env)
            if not password:
                print(f"fogmesh-broker: {args.password_env} is not set", file=sys.stderr)  # noqa: T201
                return 2
            sync = MosquittoAccounts(
                mesh, args.broker, args.out, args.pid_file, args.username, password,
                host=args.host, port=args.port, user=args.user,
            )  # fmt: skip
            asyncio.run(sync.run())
            return 0
        if args.command in ("render-mosquitto", "render-nats"):
            if args.command == "render-nats":
                written, notes = render_nats(mesh, args.broker, args.out, members=args.members)
            else:
                written, notes = render_mosquitto(
                    mesh, args.broker, args.out, install_dir=args.install_dir, user=args.user
                )
            for path in written:
                print(path)  # noqa: T201
            for note in notes:
                print(f"fogmesh-broker: note: {note}", file=sys.stderr)  # noqa: T201
            return 0
        asyncio.run(run_site(mesh, args.broker, broker=not args.no_broker, links=not args.no_links))
    except MeshConfigError as exc:
        print(f"fogmesh-broker: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    except KeyboardInterrupt:
        return 130
    return 0
