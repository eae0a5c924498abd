"""Refs checked at deploy time: every ``artefact.ref`` and ``image_ref`` of a manifest must be an
artefact the tenant pushed to the store, completely (docs/artefacts.md, "Manifests").

The scheduler asks the store on ``fm/v1/ops/artefacts/stat`` (one request per ref, at once,
each bounded by ``artefact_check_timeout_s``). The store answers ``not_found`` in the same words
for an absent ref, an unfinished upload and another tenant's artefact, and so does the
scheduler: the refusal names the component and the ref, never whose it is.

When the store does not answer (stopped, or cut off from the scheduler), the manifest is
**accepted with a warning** in the log: a site's cache still judges every fetch by the tenants
the store admitted, so nothing is run that the tenant does not hold, and refusing would stop
deploys of refs the sites have cached while the store is away. A ref that does not exist then
fails at the node (``workload-state`` failed, the cache's reason).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog

from fogmesh.bus import Bus, Refusal
from fogmesh.protocol import BusError, ErrorCode, RemoteError, topics
from fogmesh.protocol.artefacts import ARTEFACTS_DUTY, ArtefactInfo, StatArtefact, StoreVerb
from fogmesh.protocol.manifest import AppManifest

__all__ = ["ArtefactCheck", "manifest_refs"]

log = structlog.get_logger("fogmesh.scheduler")

_STAT = topics.ops(ARTEFACTS_DUTY, StoreVerb.STAT.value)


def manifest_refs(manifest: AppManifest) -> dict[str, list[str]]:
    """Each ref the manifest names, with the components naming it."""
    refs: dict[str, list[str]] = {}
    for comp in manifest.components:
        for ref in (comp.image_ref, comp.artefact.ref if comp.artefact else None):
            if ref is not None and comp.name not in refs.setdefault(ref, []):
                refs[ref].append(comp.name)
    return refs


class ArtefactCheck:
    """Asks the store whether a tenant holds each ref of a manifest (``bus`` gives the
    scheduler's bus once it exists). ``timeout_s`` 0 turns the check off."""

    def __init__(self, bus: Callable[[], Bus | None], timeout_s: float) -> None:
        self._bus = bus
        self.timeout_s = timeout_s

    async def check(self, tenant: str, manifest: AppManifest) -> None:
        """Raise :class:`Refusal` (``not_found``) if the store says ``tenant`` does not hold a
        ref of ``manifest``; return when it holds them all or the store does not answer."""
        refs = manifest_refs(manifest)
        bus = self._bus()
        if not refs or self.timeout_s <= 0 or bus is None:
            return
        unknown = await asyncio.gather(*(self._unknown(bus, tenant, ref) for ref in refs))
        missing = [ref for ref, absent in zip(refs, unknown, strict=True) if absent]
        if missing:
            named = "; ".join(f"{', '.join(refs[ref])}: {ref}" for ref in missing)
            raise Refusal(
                ErrorCode.NOT_FOUND,
                f"tenant {tenant} holds no complete artefact {named[:400]}: push it with "
                "`fogmesh push` and name the ref it prints",
                details={"refs": missing[:20]},
            )

    async def _unknown(self, bus: Bus, tenant: str, ref: str) -> bool:
        """True when the store says ``tenant`` does not hold ``ref``; False when it does or
        gives no verdict (logged)."""
        try:
            await bus.request(
                _STAT, StatArtefact(ref=ref, tenant=tenant), ArtefactInfo, timeout=self.timeout_s
            )
        except RemoteError as exc:
            if exc.code is ErrorCode.NOT_FOUND:
                return True
            log.warning("artefact store gave no verdict; ref accepted", ref=ref, error=str(exc))
        except BusError as exc:  # no answer within the timeout, or no connection
            log.warning(
                "artefact store did not answer; ref accepted unchecked",
                ref=ref,
                tenant=tenant,
                error=str(exc)[:200],
            )
        return False
