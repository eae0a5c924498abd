"""``fogmesh push FILE`` and ``fogmesh artefacts list|delete|cache``: the artefact store and
the sites' caches (``docs/artefacts.md``) from the command line.

A push asks the store where an upload of the file's sha256 stands (an empty chunk), then sends
the chunks from there, each with its own sha256; a chunk the store refuses as corrupt is sent
again, and a push cut off (Ctrl-C, a lost link) resumes at the store's offset when run again.
It shows a progress bar with the rate, and prints the ref a manifest names.

``fogmesh artefacts cache --site S`` shows what that site's cache holds, asked as
``docs/artefacts.md`` ("What a cache holds") says: a tenant's own account through the store
(``fm/v1/api/{tenant}/artefacts/cache-status``: its own refs only), any other account (an
operator) of the cache itself on ``fm/v1/ops/cache-{site}/status`` (every ref and every tenant
holding it, or one tenant's with ``--tenant``).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer
import yaml
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from fogmesh.bus import Bus
from fogmesh.cli.context import OutputOption
from fogmesh.cli.errors import CliError
from fogmesh.cli.render import OutputFormat, human_bytes
from fogmesh.cli.session import CliSettings, connect
from fogmesh.protocol import ErrorCode, RemoteError, RequestTimeout, topics
from fogmesh.protocol.artefacts import (
    ARTEFACTS_RESOURCE,
    ArtefactAction,
    ArtefactKind,
    ArtefactList,
    DeleteArtefact,
    ListArtefacts,
    PushChunk,
    PushStatus,
    cache_duty,
    chunk_digest,
)
from fogmesh.protocol.cache_status import (
    CACHE_STATUS_ACTION,
    CACHE_STATUS_VERB,
    CacheStatus,
    CacheStatusRequest,
)

__all__ = ["Pusher", "artefacts_app", "cache_table", "file_sha256", "push"]

console = Console(stderr=True)
out = Console()
T = TypeVar("T")

_CORRUPT_TRIES = 5
"""How often one chunk is sent again after the store refused it as corrupt."""
_RELAYED_WAIT_S = 15.0
"""The least a tenant's ``artefacts cache`` waits for the store, which waits 10 s for the
site's cache before it answers ``unavailable``: so the user reads the store's sentence."""
_CACHE_STATUS_FIELDS = {"site", "artefacts", "pulls", "used_bytes", "max_bytes"}
"""What ``artefacts cache -o json|yaml`` prints of the reply (not its envelope)."""

artefacts_app = typer.Typer(help="The tenant's artefacts in the store.", no_args_is_help=True)


def file_sha256(path: Path) -> str:
    """The sha256 (hex) of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while block := source.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


class Pusher:
    """Pushes one file to the store as ``tenant``; ``progress(done, total)`` is called after
    each chunk. ``corrupt`` (tests) may spoil a chunk's bytes before it is sent."""

    def __init__(
        self,
        bus: Bus,
        tenant: str,
        path: Path,
        *,
        kind: ArtefactKind = ArtefactKind.FILE,
        name: str | None = None,
        timeout: float = 10.0,
        progress: Callable[[int, int], None] | None = None,
        corrupt: Callable[[int, bytes], bytes] | None = None,
    ) -> None:
        self.bus = bus
        self.tenant = tenant
        self.path = path
        self.kind = kind
        self.name = name or path.name
        self.timeout = timeout
        self.progress = progress or (lambda _done, _total: None)
        self.corrupt = corrupt
        self.size = path.stat().st_size
        self.sha256 = file_sha256(path)
        self.resent = 0
        """Chunks sent again after the store refused them as corrupt."""

    async def _send(self, offset: int, data: bytes = b"", sha256: str | None = None) -> PushStatus:
        request = PushChunk(
            name=self.name[:256],
            kind=self.kind,
            size=self.size,
            sha256_total=self.sha256,
            offset=offset,
            data_b64=base64.b64encode(data).decode(),
            sha256=sha256,
        )
        return await self.bus.request(
            topics.api(self.tenant, ARTEFACTS_RESOURCE, ArtefactAction.PUSH),
            request,
            PushStatus,
            timeout=self.timeout,
        )

    async def run(self) -> PushStatus:
        """Push from where the store stands to the end; the final status (``complete``)."""
        status = await self._send(0)  # where does the upload stand?
        with self.path.open("rb") as source:
            while not status.complete:
                offset = status.next_offset
                self.progress(offset, self.size)
                source.seek(offset)
                data = source.read(status.chunk_bytes)
                status = await self._chunk(offset, data)
        self.progress(self.size, self.size)
        return status

    async def _chunk(self, offset: int, data: bytes) -> PushStatus:
        for _ in range(_CORRUPT_TRIES):
            sent = self.corrupt(offset, data) if self.corrupt is not None else data
            try:
                return await self._send(offset, sent, chunk_digest(data))
            except RemoteError as exc:
                if exc.code is not ErrorCode.CONFLICT:
                    raise
                self.resent += 1  # refused as corrupt: send it again
        raise CliError(f"the chunk at {offset} was refused {_CORRUPT_TRIES} times")


async def push_file(
    bus: Bus, s: CliSettings, path: Path, kind: ArtefactKind, *, quiet: bool = False
) -> PushStatus:
    """Push ``path`` with a progress bar (unless ``quiet``); the final status."""
    columns = (
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, disable=quiet, transient=False) as bar:
        task = bar.add_task(f"push {path.name}", total=None)

        def show(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        pusher = Pusher(bus, s.tenant, path, kind=kind, timeout=s.timeout, progress=show)
        return await pusher.run()


def _settings(ctx: typer.Context) -> CliSettings:
    settings = ctx.obj
    assert isinstance(settings, CliSettings)
    return settings


async def _with_bus(s: CliSettings, work: Callable[[Bus], Awaitable[T]]) -> T:
    async with connect(s) as bus:
        return await work(bus)


def push(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    kind: Annotated[
        ArtefactKind, typer.Option(help="app (.tar + script), image (docker save) or file")
    ] = ArtefactKind.FILE,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")] = False,
) -> None:
    """Push FILE to the artefact store (resumes an interrupted push); prints its ref."""
    s = _settings(ctx)
    try:
        status = asyncio.run(_with_bus(s, lambda bus: push_file(bus, s, file, kind, quiet=quiet)))
    except RequestTimeout as exc:
        raise CliError(f"the artefact store did not answer: {exc}", code=4) from exc
    out.print(status.ref, highlight=False)


@artefacts_app.command("list")
def list_artefacts(ctx: typer.Context) -> None:
    """The tenant's artefacts and its quota."""
    s = _settings(ctx)

    async def work(bus: Bus) -> ArtefactList:
        return await bus.request(
            topics.api(s.tenant, ARTEFACTS_RESOURCE, ArtefactAction.LIST),
            ListArtefacts(),
            ArtefactList,
            timeout=s.timeout,
        )

    listing = asyncio.run(_with_bus(s, work))
    table = Table("REF", "NAME", "KIND", "BYTES")
    for item in listing.artefacts:
        table.add_row(item.ref, item.name, item.kind.value, str(item.size))
    out.print(table)
    out.print(f"{listing.used_bytes} of {listing.quota_bytes} bytes used", highlight=False)


@artefacts_app.command("delete")
def delete_artefact(ctx: typer.Context, ref: str) -> None:
    """Drop the tenant's artefact REF (the store keeps no bytes nobody holds)."""
    s = _settings(ctx)

    async def work(bus: Bus) -> ArtefactList:
        return await bus.request(
            topics.api(s.tenant, ARTEFACTS_RESOURCE, ArtefactAction.DELETE),
            DeleteArtefact(ref=ref),
            ArtefactList,
            timeout=s.timeout,
        )

    asyncio.run(_with_bus(s, work))
    out.print(f"deleted {ref}", highlight=False)


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"


def cache_table(status: CacheStatus) -> Table:
    """One row per artefact the cache holds (most recently used first), then one per pull in
    progress with its share pulled so far."""
    table = Table(title=f"cache of {status.site}")
    for column in ("ref", "name", "kind", "size", "state", "tenants", "last used"):
        table.add_column(column)
    for a in status.artefacts:
        table.add_row(
            a.ref, a.name or "-", a.kind.value, human_bytes(a.size), "[green]cached[/]",
            ",".join(a.tenants) or "-", _when(a.last_used),
        )  # fmt: skip
    for p in status.pulls:
        share = 100 * p.offset / p.size if p.size else 100.0
        table.add_row(
            p.ref, "-", "-", human_bytes(p.size), f"[yellow]pulling {share:.0f}%[/]",
            ",".join(p.tenants) or "-", "-",
        )  # fmt: skip
    return table


async def ask_cache_status(
    bus: Bus, s: CliSettings, site: str, only_tenant: str | None
) -> CacheStatus:
    """What ``site``'s cache holds, asked the way the account may: a tenant's own account through
    the store, any other account of the cache itself (narrowed to ``only_tenant`` if given)."""
    if s.acts_as_tenant_account:
        if only_tenant is not None and only_tenant != s.tenant:
            raise CliError(
                f"the account {s.username} sees only its own refs: drop --tenant {only_tenant}",
                code=2,
            )
        topic = topics.api(s.tenant, ARTEFACTS_RESOURCE, CACHE_STATUS_ACTION)
        request, wait = CacheStatusRequest(site=site), max(s.timeout, _RELAYED_WAIT_S)
        asked = "the artefact store"
    else:
        topic = topics.ops(cache_duty(site), CACHE_STATUS_VERB)
        request, wait = CacheStatusRequest(site=site, tenant=only_tenant), s.timeout
        asked = f"the cache of {site}"
    try:
        return await bus.request(topic, request, CacheStatus, timeout=wait)
    except RequestTimeout as exc:
        raise CliError(
            f"{asked} did not answer within {wait:g} s (no cache at {site}, or its link is down?)",
            code=4,
        ) from exc


@artefacts_app.command("cache")
def cache_status(
    ctx: typer.Context,
    site: Annotated[str, typer.Option(help="the site whose cache to ask")],
    only_tenant: Annotated[
        str | None, typer.Option("--tenant", help="an operator: only this tenant's refs")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="the same as -o json")] = False,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """What a site's cache holds: its artefacts, its pulls in progress, the bytes it uses."""
    s = _settings(ctx)
    fmt = OutputFormat.JSON if as_json else output
    status = asyncio.run(_with_bus(s, lambda bus: ask_cache_status(bus, s, site, only_tenant)))
    if fmt is not OutputFormat.TABLE:
        data = status.model_dump(mode="json", include=_CACHE_STATUS_FIELDS)
        text = (
            yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
            if fmt is OutputFormat.YAML
            else json.dumps(data, indent=2, ensure_ascii=False) + "\n"
        )
        out.file.write(text)
        out.file.flush()
        return
    out.print(cache_table(status))
    pulling = f", {len(status.pulls)} pulling" if status.pulls else ""
    out.print(
        f"{human_bytes(status.used_bytes)} of {human_bytes(status.max_bytes)} used, "
        f"{len(status.artefacts)} cached{pulling}",
        highlight=False,
    )
