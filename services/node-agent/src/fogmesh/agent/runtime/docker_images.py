"""The image a workload's container runs: pulled from its registry, or an ``image_ref`` fetched
from the site's artefact cache and loaded (:mod:`fogmesh.agent.image_load`)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from fogmesh.agent.image_load import load_image, ref_image
from fogmesh.agent.runtime.engine import Engine, EngineError
from fogmesh.agent.runtime.errors import PrepareFailed, translate_errors
from fogmesh.protocol.workload import WorkloadSpec

if TYPE_CHECKING:
    from fogmesh.agent.artefact_fetch import SiteFetcher

__all__ = ["ensure_image", "ensure_ref_image"]

# The Docker runtime's own logger: these steps are part of its prepare.
log = logging.getLogger("fogmesh.agent.runtime.docker")


async def _present(docker: Engine, image: str) -> bool:
    """Whether the engine has ``image`` (a refusal other than 404 is raised)."""
    try:
        await docker.inspect_image(image)
    except EngineError as exc:
        if exc.status != 404:
            raise
        return False
    return True


async def ensure_image(docker: Engine, image: str, *, always_pull: bool, timeout: float) -> None:
    """Pull ``image`` unless present (or always, with ``always_pull``); a failed pull of a
    present image is not fatal. Failures are :class:`PrepareFailed`."""
    with translate_errors(f"pull {image}", failure=PrepareFailed):
        present = await _present(docker, image)
        if present and not always_pull:
            return
        try:
            await docker.pull(image, timeout=timeout)
        except EngineError as exc:
            if not present:
                raise
            log.warning("pull of %s failed (%s); using the local image", image, exc)


async def ensure_ref_image(
    docker: Engine, fetcher: SiteFetcher | None, spec: WorkloadSpec, ref: str, *, timeout: float
) -> None:
    """Load the image of ``ref`` unless present, fetched from the site's cache by ``fetcher``
    for ``spec``'s tenant. Failures are :class:`PrepareFailed`."""
    name = ref_image(ref)
    with translate_errors(f"load {ref}", failure=PrepareFailed):
        present = await _present(docker, name)
        if fetcher is None:
            if present:
                return
            raise PrepareFailed(f"prepare {spec.name}: no artefact store on this node")
        # A loaded image serves only the tenants the site's cache admitted for its ref.
        blob = await fetcher.fetch(ref, spec.tenant)
        if not present:
            await load_image(docker, blob, ref, timeout=timeout)
