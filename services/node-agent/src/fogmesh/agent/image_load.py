"""Container images by reference: `docker save` output fetched from the site's cache
(:mod:`fogmesh.agent.artefact_fetch`), loaded with the Docker API and tagged
``fogmesh/ref:{sha256}``, the name a workload's container is made from. The tag is the ref's,
not the one the tar names, so one tenant's image can never take another's name on a node."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fogmesh.agent.runtime.errors import PrepareFailed
from fogmesh.protocol.artefacts import ref_digest

__all__ = ["REF_REPO", "load_image", "ref_image"]

REF_REPO = "fogmesh/ref"


def ref_image(ref: str) -> str:
    """The local image name of an image ref."""
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


async def load_image(docker: Any, blob: Path, ref: str, *, timeout: float = 600.0) -> str:
    """Load ``blob`` (an image tar) into the engine of ``docker`` (aiodocker) and tag it as
    :func:`ref_image`; that name."""
    with blob.open("rb") as source:
        answer = await docker.images.import_image(source, timeout=timeout)
    loaded = _loaded(answer)
    repo, _, tag = ref_image(ref).partition(":")
    await docker.images.tag(loaded, repo, tag=tag)
    return ref_image(ref)
