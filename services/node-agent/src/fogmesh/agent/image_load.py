"""Container images by reference: `docker save` output fetched from the site's cache
(:mod:`fogmesh.agent.artefact_fetch`), loaded with the Docker API (sent from the file in
pieces, never read whole) and tagged
``fogmesh/ref:{sha256}``, the name a workload's container is made from. The tag is the ref's,
not the one the tar names, so one tenant's image can never take another's name on a node.
Loaded refs no workload uses are untagged by the node's collector (:mod:`fogmesh.agent.blob_gc`)
with :func:`unload_image`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from fogmesh.agent.runtime.engine import EngineError
from fogmesh.agent.runtime.errors import PrepareFailed

if TYPE_CHECKING:
    from fogmesh.agent.runtime.engine import Engine

__all__ = ["REF_REPO", "load_image", "loaded_refs", "ref_image", "unload_image"]

log = structlog.get_logger("fogmesh.agent")
_CONFLICT = 409  # the engine's answer for an image a container still uses
_ABSENT = 404

REF_REPO = "fogmesh/ref"


def ref_image(ref: str) -> str:
    """The local image name of an image ref."""
    from fogmesh.protocol.artefacts import ref_digest  # on first use: an idle agent loads none

    return f"{REF_REPO}:{ref_digest(ref)}"


def _loaded(answer: Any) -> str:
    """The image the engine says it loaded (a name, or an id)."""
    messages = answer if isinstance(answer, list) else [answer]
    for message in messages:
        text = str(message.get("stream", "")) if isinstance(message, dict) else ""
        for prefix in ("Loaded image ID: ", "Loaded image: "):
            if text.startswith(prefix):
                return text.removeprefix(prefix).strip()
        if isinstance(message, dict) and message.get("error"):
            raise PrepareFailed(f"docker load: {message['error']}")
    raise PrepareFailed(f"docker load named no image: {messages!r:.200}")


async def load_image(docker: Engine, blob: Path, ref: str, *, timeout: float = 600.0) -> str:
    """Load ``blob`` (an image tar) into the engine and tag it as :func:`ref_image`; that
    name."""
    answer = await docker.load(blob, timeout=timeout)
    loaded = _loaded(answer)
    repo, _, tag = ref_image(ref).partition(":")
    await docker.tag(loaded, repo, tag)
    return ref_image(ref)


async def loaded_refs(docker: Engine) -> set[str]:
    """The digests of the image refs loaded in the engine (its ``fogmesh/ref:*`` tags)."""
    images = await docker.images({"reference": [REF_REPO]})
    prefix = f"{REF_REPO}:"
    return {
        tag.removeprefix(prefix)
        for image in images
        for tag in image.get("RepoTags") or []
        if tag.startswith(prefix)
    }


async def unload_image(docker: Engine, ref: str) -> bool:
    """Remove the tag :func:`ref_image` (and the image, when it was its only name), never
    forced: False while a container still uses it, whichever agent of the engine made it (an
    image that keeps the tar's own tag would be untagged under a running container)."""
    users = await docker.containers({"ancestor": [ref_image(ref)]})
    if users:
        log.info("loaded image still in use; kept", ref=ref, containers=len(users))
        return False
    try:
        await docker.remove_image(ref_image(ref), force=False)
    except EngineError as exc:
        if exc.status == _ABSENT:
            return True
        if exc.status == _CONFLICT:
            log.info("loaded image still in use; kept", ref=ref)
            return False
        raise
    return True
