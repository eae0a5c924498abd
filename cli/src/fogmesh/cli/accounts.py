"""``fogmesh tenant|account|node``: broker accounts, tenants and node join tokens at runtime.

Each command publishes retained records (:mod:`fogmesh.protocol.accounts`) as the operator; the
brokers read them live, so nothing restarts, and a revoked account's or deleted tenant's
sessions end at once. Passwords are hashed here (``$7$``): no plain password travels.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from fogmesh.broker.passwords import hash_password
from fogmesh.bus import Bus, MessageContext
from fogmesh.cli.errors import CliError
from fogmesh.cli.session import CliSettings, connect
from fogmesh.protocol import new_id
from fogmesh.protocol.accounts import (
    ACCOUNTS_FILTER,
    JOIN_PREFIX,
    JOIN_ROLE,
    TENANTS_FILTER,
    AccountRecord,
    TenantRecord,
    account_topic,
    tenant_topic,
)

__all__ = ["account_app", "node_app", "parse_ttl", "tenant_app"]

T = TypeVar("T")
M = TypeVar("M", AccountRecord, TenantRecord)
tenant_app = typer.Typer(help="Tenants: create, delete, list (operator).", no_args_is_help=True)
account_app = typer.Typer(help="Broker accounts: create, delete, list, passwd (operator).",
                          no_args_is_help=True)  # fmt: skip
node_app = typer.Typer(help="Node credentials: join tokens and revocation (operator).",
                       no_args_is_help=True)  # fmt: skip
out = Console()
_QUIET = 0.5  # retained records come right after the subscription; then nothing more
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_ttl(text: str) -> float:
    """``90``, ``90s``, ``20m``, ``24h``, ``1d`` -> seconds."""
    m = re.fullmatch(r"(\d+)([smhd]?)", text.strip())
    if not m or int(m.group(1)) <= 0:
        raise CliError(f"--ttl wants a positive duration like 20m or 24h, not {text!r}", code=2)
    return float(int(m.group(1)) * _UNITS[m.group(2) or "s"])


def _settings(ctx: typer.Context) -> CliSettings:
    settings = ctx.find_root().obj
    assert isinstance(settings, CliSettings)
    return settings


def _run(ctx: typer.Context, work: Callable[[Bus], Awaitable[T]]) -> T:
    async def go() -> T:
        async with connect(_settings(ctx)) as bus:
            return await work(bus)

    return asyncio.run(go())


async def _retain(bus: Bus, *records: AccountRecord | TenantRecord) -> None:
    for rec in records:
        topic = account_topic(rec.username) if isinstance(rec, AccountRecord) else (
            tenant_topic(rec.name))  # fmt: skip
        await bus.publish(topic, rec, qos=1, retain=True)


async def _collect(bus: Bus, flt: str, model: type[M], timeout: float) -> list[M]:
    """The retained records on ``flt``: read until nothing came for a short quiet spell."""
    found: list[M] = []
    arrived = asyncio.Event()

    async def keep(rec: M, _ctx: MessageContext) -> None:
        found.append(rec)
        arrived.set()

    bus.subscribe(flt, model, keep)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        arrived.clear()
        try:
            await asyncio.wait_for(arrived.wait(), _QUIET)
        except TimeoutError:
            break
    return found


def _password(given: str | None) -> tuple[str, bool]:
    return (given, False) if given else (secrets.token_urlsafe(18), True)


def _account_rows(records: list[AccountRecord]) -> Table:
    table = Table("username", "role", "node", "tenant", "state")
    now = time.time()
    for rec in sorted(records, key=lambda r: r.username):
        state = "revoked" if rec.revoked else ("expired" if not rec.live(now) else "active")
        table.add_row(rec.username, rec.role, rec.node or "", rec.account_tenant or "", state)
    return table


# -- tenants ----------------------------------------------------------------------------------


@tenant_app.command("create")
def tenant_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="tenant id (also its account's username)")],
    password: Annotated[
        str | None, typer.Option(help="the account's password (default: made)")
    ] = None,
) -> None:
    """Create a tenant and its account; prints the password when it was made here."""
    secret, made = _password(password)
    records = (
        TenantRecord(name=name),
        AccountRecord(username=name, role="tenant", account_tenant=name,
                      password_hash=hash_password(secret)),
    )  # fmt: skip
    _run(ctx, lambda bus: _retain(bus, *records))
    out.print(f"tenant {name} created" + (f"; password: {secret}" if made else ""))


@tenant_app.command("delete")
def tenant_delete(ctx: typer.Context, name: Annotated[str, typer.Argument()]) -> None:
    """Delete a tenant: its accounts are refused and their sessions end at once."""

    async def work(bus: Bus) -> None:
        accounts = await _collect(bus, ACCOUNTS_FILTER, AccountRecord, _settings(ctx).timeout)
        tombstones = [
            AccountRecord(username=a.username, role=a.role, account_tenant=name, revoked=True)
            for a in accounts
            if a.account_tenant == name and a.username != name and not a.revoked
        ]
        own = AccountRecord(username=name, role="tenant", account_tenant=name, revoked=True)
        await _retain(bus, TenantRecord(name=name, revoked=True), own, *tombstones)

    _run(ctx, work)
    out.print(f"tenant {name} deleted")


@tenant_app.command("list")
def tenant_list(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Tenants created or deleted at runtime (the mesh file's are not listed)."""
    found = _run(
        ctx, lambda bus: _collect(bus, TENANTS_FILTER, TenantRecord, _settings(ctx).timeout)
    )
    rows = sorted((t.name, "deleted" if t.revoked else "active") for t in found)
    if as_json:
        out.print_json(json.dumps([{"name": n, "state": s} for n, s in rows]))
        return
    table = Table("tenant", "state")
    for row in rows:
        table.add_row(*row)
    out.print(table)


# -- accounts ---------------------------------------------------------------------------------


@account_app.command("create")
def account_create(
    ctx: typer.Context,
    username: Annotated[str, typer.Argument()],
    *,
    role: Annotated[str, typer.Option(help="service, bridge, node, tenant or a mesh file role")],
    node: Annotated[str | None, typer.Option(help="node id for the node role")] = None,
    tenant: Annotated[
        str | None, typer.Option("--of-tenant", help="tenant id for the tenant role")
    ] = None,
    password: Annotated[
        str | None, typer.Option(help="password (default: made and printed)")
    ] = None,
) -> None:
    """Create (or replace) an account; brokers admit it at once."""
    if role == JOIN_ROLE:
        raise CliError("joiner accounts come from `fogmesh node token`", code=2)
    secret, made = _password(password)
    rec = AccountRecord(username=username, role=role, node=node, account_tenant=tenant,
                        password_hash=hash_password(secret))  # fmt: skip
    _run(ctx, lambda bus: _retain(bus, rec))
    out.print(f"account {username} created" + (f"; password: {secret}" if made else ""))


@account_app.command("delete")
def account_delete(ctx: typer.Context, username: Annotated[str, typer.Argument()]) -> None:
    """Delete an account (also one of the mesh file): its sessions end at once."""
    rec = AccountRecord(username=username, role="deleted", revoked=True)
    _run(ctx, lambda bus: _retain(bus, rec))
    out.print(f"account {username} deleted")


@account_app.command("list")
def account_list(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Accounts made at runtime, with their state (hashes are not shown)."""
    found = _run(
        ctx, lambda bus: _collect(bus, ACCOUNTS_FILTER, AccountRecord, _settings(ctx).timeout)
    )
    if as_json:
        rows = [r.model_dump(mode="json", exclude={"password_hash"}) for r in found]
        out.print_json(json.dumps(sorted(rows, key=lambda r: r["username"])))
    else:
        out.print(_account_rows(found))


@account_app.command("passwd")
def account_passwd(
    ctx: typer.Context,
    username: Annotated[str, typer.Argument()],
    password: Annotated[
        str | None, typer.Option(help="new password (default: made and printed)")
    ] = None,
) -> None:
    """Give a runtime account a new password; sessions that used the old one end."""
    secret, made = _password(password)

    async def work(bus: Bus) -> None:
        found = await _collect(bus, account_topic(username), AccountRecord, _settings(ctx).timeout)
        live = [r for r in found if not r.revoked]
        if not live:
            raise CliError(f"no runtime account {username} (create it with `account create`)")
        new = live[-1].model_copy(update={"password_hash": hash_password(secret), "id": new_id(),
                                          "ts": time.time()})  # fmt: skip
        await _retain(bus, new)

    _run(ctx, work)
    out.print(f"password of {username} changed" + (f": {secret}" if made else ""))


# -- nodes ------------------------------------------------------------------------------------


@node_app.command("token")
def node_token(
    ctx: typer.Context,
    ttl: Annotated[str, typer.Option(help="how long the token lives (20m, 24h, ...)")] = "20m",
    node: Annotated[
        str | None, typer.Option(help="the node it admits (default: the agent's)")
    ] = None,
) -> None:
    """Print a single-use join token: `fogmesh-agent --join-token TOKEN` redeems it."""
    token_id, secret = new_id()[:12].lower(), secrets.token_urlsafe(24)
    rec = AccountRecord(username=f"{JOIN_PREFIX}{token_id}", role=JOIN_ROLE, node=node,
                        password_hash=hash_password(secret),
                        expires_at=time.time() + parse_ttl(ttl))  # fmt: skip
    _run(ctx, lambda bus: _retain(bus, rec))
    out.print(f"{token_id}.{secret}", highlight=False, soft_wrap=True)


@node_app.command("revoke")
def node_revoke(ctx: typer.Context, name: Annotated[str, typer.Argument(metavar="NODE")]) -> None:
    """End a node's session and refuse its credential from now on."""
    rec = AccountRecord(username=name, role="node", node=name, revoked=True)
    _run(ctx, lambda bus: _retain(bus, rec))
    out.print(f"node {name} revoked")
