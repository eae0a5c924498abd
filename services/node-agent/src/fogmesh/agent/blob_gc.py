"""Garbage collection of a node's fetched artefacts (docs/artefacts.md, "Garbage collection").

The agent keeps every ref it fetched under ``{state_dir}/.blobs/`` and every image ref it
loaded as ``fogmesh/ref:{sha256}``. Every ``blob_sweep_s`` it drops those that no workload
uses any more and have not been used for ``blob_grace_s``:

* **in use** is a ref the node's desired state names, or one of a workload the agent still
  tracks (running, stopped by its tenant, frozen for a migration, or being removed);
* **not used for the grace period**: each sweep stamps the blobs in use (their mtime), so a
  blob's age is the time since a workload last named it; an image whose blob is gone counts
  from the first sweep that found it unused;
* **a pending migration** (a snapshot staged in ``handover/`` for less than the grace period)
  postpones the sweep: a workload arriving here may name a ref its desired state does not yet;
* an image a container still uses is refused by the engine (never forced) and tried again at
  the next sweep.

A blob is dropped under the fetcher's lock for its ref, after checking once more that no
workload names it, so a fetch of the same ref never sees half of it. The artefact contract is
imported by the first ref met: a node that holds none never loads it (docs/agent.md, "Memory").
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from fogmesh.agent.artefact_fetch import SiteFetcher
from fogmesh.agent.image_load import loaded_refs, unload_image
from fogmesh.protocol import RuntimeKind, WorkloadSpec

if TYPE_CHECKING:
    from fogmesh.agent.runtime.engine import Engine
    from fogmesh.agent.service import Agent

__all__ = ["BlobCollector", "Swept", "blob_collector", "spec_refs"]

log = structlog.get_logger("fogmesh.agent")


def spec_refs(specs: Iterable[WorkloadSpec]) -> set[str]:
    """The digests (hex) of the refs ``specs`` name."""
    refs = [
        ref
        for spec in specs
        for ref in (spec.image_ref, spec.artefact.ref if spec.artefact else None)
        if ref is not None
    ]
    if not refs:
        return set()
    from fogmesh.protocol.artefacts import ref_digest

    return {ref_digest(ref) for ref in refs}


@dataclass
class Swept:
    """What one sweep dropped (digests) and what it kept because it is in use."""

    blobs: list[str] = field(default_factory=list)
    images: list[str] = field(default_factory=list)
    kept: int = 0
    postponed: bool = False


class BlobCollector:
    """Drops unused blobs and loaded images of one node.

    ``in_use`` gives the digests some workload names now; ``docker`` the engine client
    (:class:`~fogmesh.agent.runtime.engine.Engine`) or None on a node without Docker;
    ``staged`` the handover directories.
    """

    def __init__(
        self,
        fetcher: SiteFetcher,
        in_use: Callable[[], set[str]],
        *,
        docker: Callable[[], Engine | None] = lambda: None,
        staged: Iterable[Path] = (),
        grace_s: float = 3600.0,
        sweep_s: float = 600.0,
    ) -> None:
        self.fetcher = fetcher
        self.in_use = in_use
        self.docker = docker
        self.staged = list(staged)
        self.grace_s = grace_s
        self.sweep_s = sweep_s
        self._image_unused: dict[str, float] = {}
        """Since when (monotonic) a loaded image without a blob has been unused."""

    async def run(self) -> None:
        """Sweep now and then every ``sweep_s`` until cancelled."""
        while True:
            try:
                swept = await self.sweep()
                if swept.blobs or swept.images:
                    log.info("unused artefacts dropped", blobs=swept.blobs, images=swept.images)
            except Exception:  # a failed sweep must not stop the agent; the next one retries
                log.exception("artefact sweep failed")
            await asyncio.sleep(self.sweep_s)

    def _migration_pending(self, now: float) -> bool:
        for root in self.staged:
            try:
                entries = list(root.iterdir())
            except FileNotFoundError:
                continue
            if any(now - p.stat().st_mtime < self.grace_s for p in entries if p.is_file()):
                return True
        return False

    async def sweep(self) -> Swept:
        """One pass: stamp what is in use, drop what has been unused for the grace period."""
        now = time.time()
        swept = Swept()
        if await asyncio.to_thread(self._migration_pending, now):
            swept.postponed = True
            return swept
        used = self.in_use()
        for digest in self.fetcher.held():
            blob = self.fetcher.blob(digest)
            if digest in used:
                swept.kept += 1
                os.utime(blob, (now, now))  # in use now: its grace starts after its last use
                continue
            try:
                age = now - blob.stat().st_mtime
            except FileNotFoundError:
                continue
            if age >= self.grace_s and await self._drop_blob(digest):
                swept.blobs.append(digest)
        docker = self.docker()
        if docker is not None:
            swept.images = await self._drop_images(docker, used)
        return swept

    async def _drop_blob(self, digest: str) -> bool:
        from fogmesh.protocol.artefacts import ref_of

        ref = ref_of(digest)
        async with self.fetcher.lock(ref):
            if digest in self.in_use():  # named again meanwhile
                return False
            return self.fetcher.drop(ref)

    async def _drop_images(self, docker: Engine, used: set[str]) -> list[str]:
        dropped: list[str] = []
        clock = time.monotonic()
        loaded = await loaded_refs(docker)
        for digest in list(self._image_unused):
            if digest not in loaded or digest in used:
                del self._image_unused[digest]
        for digest in loaded:
            if digest in used:
                continue
            if self.fetcher.blob(digest).is_file():
                continue  # its blob's age decides: the image goes with (or after) it
            since = self._image_unused.setdefault(digest, clock)
            if clock - since < self.grace_s:
                continue
            if digest in self.in_use():
                continue
            from fogmesh.protocol.artefacts import ref_of

            if await unload_image(docker, ref_of(digest)):
                self._image_unused.pop(digest, None)
                dropped.append(digest)
        return dropped


def blob_collector(agent: Agent) -> BlobCollector:
    """The collector of ``agent``: its fetcher, its desired and tracked workloads, its Docker
    engine when it runs one, its handover directories, the grace and sweep of its config."""

    def in_use() -> set[str]:
        desired = agent.store.current.workloads if agent.store.current else []
        reconciler = agent.reconciler
        tracked = [t.spec for t in reconciler.tracked.values()] if reconciler else []
        return spec_refs([*desired, *tracked])

    def docker() -> Engine | None:
        runtime = agent.runtimes.get(RuntimeKind.DOCKER)
        engine: Engine | None = getattr(runtime, "engine", None) if runtime is not None else None
        return engine

    handover = agent.reconciler.handover if agent.reconciler is not None else None
    return BlobCollector(
        agent.fetcher,
        in_use,
        docker=docker,
        staged=[handover.incoming, handover.outgoing] if handover is not None else [],
        grace_s=agent.config.blob_grace_s,
        sweep_s=agent.config.blob_sweep_s,
    )
