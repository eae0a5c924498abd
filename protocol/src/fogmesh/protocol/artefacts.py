"""The artefact store: apps, files and container images pushed once over the bus, cached per
site, named by content (``sha256:...``); see ``docs/artefacts.md``.

Three parties speak here:

* a tenant (``fogmesh push``, the dashboard, Node-RED) asks the store on
  ``fm/v1/api/{tenant}/artefacts/{action}``: ``push`` (:class:`PushChunk` -> :class:`PushStatus`;
  a chunk with no data asks where an upload stands), ``list`` (:class:`ListArtefacts` ->
  :class:`ArtefactList`) and ``delete`` (:class:`DeleteArtefact` -> :class:`ArtefactList`);
* a site cache asks the store on ``fm/v1/ops/artefacts/{verb}``: ``stat``
  (:class:`StatArtefact` -> :class:`ArtefactInfo`, refused ``not_found`` unless the tenant owns
  the artefact) and ``read`` (:class:`ReadChunk` -> :class:`ChunkData`);
* a node agent asks its site's cache on ``fm/v1/ops/cache-{site}/artefact-fetch``
  (:class:`FetchArtefact` -> :class:`FetchReady`): the cache pulls what it lacks from the store
  (once, whatever the number of nodes asking) and answers with a one-time URL on its own host
  the node downloads the bytes from.

Every chunk carries its own sha256 and the whole artefact's; a chunk at another offset than the
one the store needs next is not written (the reply says which one it needs, so an interrupted
push resumes), and a chunk whose sha256 does not match its bytes is refused (``conflict``) and
sent again.
"""

from __future__ import annotations

import hashlib
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

from pydantic import ConfigDict, Field

from fogmesh.protocol._ids import Ident
from fogmesh.protocol._model import Model
from fogmesh.protocol.envelope import Reply, Request

if TYPE_CHECKING:
    from fogmesh.protocol.manifest import AppManifest

__all__ = [
    "ARTEFACTS_DUTY",
    "ARTEFACTS_RESOURCE",
    "CHUNK_BYTES",
    "FETCH_VERB",
    "REF_PATTERN",
    "ArtefactAction",
    "ArtefactInfo",
    "ArtefactKind",
    "ArtefactList",
    "ArtefactRef",
    "ChunkData",
    "DeleteArtefact",
    "FetchArtefact",
    "FetchReady",
    "ListArtefacts",
    "PushChunk",
    "PushStatus",
    "ReadChunk",
    "StatArtefact",
    "StoreVerb",
    "UploadInfo",
    "cache_duty",
    "chunk_digest",
    "chunk_frame",
    "read_frame",
    "ref_digest",
    "ref_of",
    "url_sources",
]

ARTEFACTS_RESOURCE = "artefacts"
"""The ``{resource}`` level of the store's API topics."""
ARTEFACTS_DUTY = "artefacts"
"""The ``{duty}`` level of the store's internal topics (``fm/v1/ops/artefacts/{verb}``)."""
FETCH_VERB = "artefact-fetch"
"""The verb a node asks its site's cache with; the only ``ops`` verb a node may publish."""
CHUNK_BYTES = 128 * 1024
"""The largest chunk one message carries (before base64): it fits the bus's 256 KiB limit."""
REF_PATTERN = r"^sha256:[0-9a-f]{64}$"

_SHA256 = r"^[0-9a-f]{64}$"
_MAX_B64 = (CHUNK_BYTES * 4) // 3 + 4

ArtefactRef = Annotated[str, Field(pattern=REF_PATTERN, description="sha256:{64 hex}")]
"""A reference to a stored artefact: its content's sha256."""


def ref_of(digest: str) -> str:
    """The reference of content whose sha256 is ``digest`` (hex)."""
    return f"sha256:{digest}"


def ref_digest(ref: str) -> str:
    """The hex sha256 a reference names."""
    return ref.removeprefix("sha256:")


def chunk_digest(data: bytes) -> str:
    """The sha256 (hex) a chunk carries."""
    return hashlib.sha256(data).hexdigest()


def cache_duty(site: str) -> str:
    """The ``{duty}`` level a site's cache serves: ``cache-{site}``."""
    return f"cache-{site}"


def url_sources(manifest: AppManifest) -> list[str]:
    """The components of ``manifest`` that fetch their artefact by URL (``name: url``).

    A tenant's manifest may name only refs to the store: a ``file://`` or ``http://`` URL would
    make a node read its own files or reach internal addresses on the tenant's behalf. The
    scheduler refuses such a manifest unless the operator allowed that tenant URLs.
    """
    return [
        f"{c.name}: {c.artefact.url}" for c in manifest.components if c.artefact and c.artefact.url
    ]


class ArtefactKind(StrEnum):
    """What an artefact holds (informational; the manifest says how it is used)."""

    APP = "app"  # a .tar with a command script, run natively
    IMAGE = "image"  # `docker save` output, loaded and tagged by the agent
    FILE = "file"


class ArtefactAction(StrEnum):
    """The actions of ``fm/v1/api/{tenant}/artefacts/{action}``."""

    PUSH = "push"
    LIST = "list"
    DELETE = "delete"


class StoreVerb(StrEnum):
    """The verbs of ``fm/v1/ops/artefacts/{verb}`` (site caches only)."""

    STAT = "stat"
    READ = "read"


class PushChunk(Request):
    """One chunk of an upload of ``size`` bytes whose sha256 is ``sha256_total``.

    With no ``data_b64`` it only asks where the upload stands (how a push starts or resumes).
    The store writes a chunk only at the offset it needs next and only when its ``sha256``
    matches; the last chunk completes the artefact once the whole checksum matches.
    """

    name: str = Field(default="", max_length=256, description="a label, e.g. the file's name")
    kind: ArtefactKind = ArtefactKind.FILE
    size: int = Field(ge=0, description="the whole artefact's bytes")
    sha256_total: str = Field(pattern=_SHA256)
    offset: int = Field(default=0, ge=0)
    data_b64: str = Field(default="", max_length=_MAX_B64)
    sha256: str | None = Field(default=None, pattern=_SHA256, description="of this chunk")


class PushStatus(Reply):
    """Where an upload stands: the offset the store needs next, or ``complete``."""

    ref: ArtefactRef
    next_offset: int = Field(ge=0)
    size: int = Field(ge=0)
    complete: bool = False
    chunk_bytes: int = Field(default=CHUNK_BYTES, gt=0, description="the largest chunk")
    quota_bytes: int = Field(ge=0, description="the tenant's quota")
    used_bytes: int = Field(ge=0, description="what the tenant's artefacts and uploads take")


class ArtefactInfo(Reply):
    """One stored artefact as its tenant sees it."""

    ref: ArtefactRef
    name: str = ""
    kind: ArtefactKind = ArtefactKind.FILE
    size: int = Field(ge=0)
    created: float = 0.0


class ListArtefacts(Request):
    """``list``: the tenant's artefacts and its quota."""


class DeleteArtefact(Request):
    """``delete``: drop the tenant's claim on ``ref``; the bytes go once no tenant holds them."""

    ref: ArtefactRef


class UploadInfo(Model):
    """One of the tenant's unfinished uploads: where it stands (``push`` resumes there)."""

    model_config = ConfigDict(extra="forbid")

    ref: ArtefactRef
    size: int = Field(ge=0, description="the whole artefact's bytes")
    next_offset: int = Field(ge=0, description="the bytes the store holds so far")
    updated: float = Field(default=0.0, description="unix time of its last chunk")


class ArtefactList(Reply):
    """The tenant's artefacts (newest first), its unfinished uploads, what they take and the
    quota."""

    artefacts: list[ArtefactInfo] = Field(default_factory=list)
    uploads: list[UploadInfo] = Field(default_factory=list)
    used_bytes: int = Field(ge=0)
    quota_bytes: int = Field(ge=0)


class StatArtefact(Request):
    """``stat`` (caches only): size and name of ``ref`` if ``tenant`` holds it."""

    ref: ArtefactRef
    tenant: Ident


class ReadChunk(Request):
    """``read`` (caches only): ``length`` bytes of ``ref`` at ``offset``.

    With ``binary`` the answer is a frame, not JSON: the :class:`ChunkData` header (no
    ``data_b64``), a newline, then the raw bytes (:func:`chunk_frame`), so what crosses the WAN
    is the artefact's size and not a third more; an error is still an ``ErrorReply``.
    """

    ref: ArtefactRef
    offset: int = Field(ge=0)
    length: int = Field(gt=0, le=CHUNK_BYTES)
    binary: bool = False


class ChunkData(Reply):
    """One chunk (base64) and its sha256."""

    ref: ArtefactRef
    offset: int = Field(ge=0)
    data_b64: str = Field(default="", max_length=_MAX_B64, description="empty in a frame")
    sha256: str = Field(pattern=_SHA256)


def chunk_frame(header: ChunkData, data: bytes) -> bytes:
    """A binary chunk answer: the header's JSON, a newline, the bytes."""
    return header.model_dump_json().encode() + b"\n" + data


def read_frame(payload: bytes) -> tuple[ChunkData, bytes] | None:
    """The header and bytes of a binary chunk answer; ``None`` if ``payload`` is plain JSON
    (an ``ErrorReply``). Raises pydantic's ``ValidationError`` for a bad header."""
    head, newline, data = payload.partition(b"\n")
    if not newline:
        return None
    return ChunkData.model_validate_json(head), data


class FetchArtefact(Request):
    """A node asks its site's cache for ``ref`` on behalf of a workload of ``tenant``."""

    ref: ArtefactRef
    tenant: Ident
    node: Ident


class FetchReady(Reply):
    """The artefact is in the site's cache: download it from ``url`` (valid for a while, for
    this artefact only) and check it against ``ref``."""

    ref: ArtefactRef
    size: int = Field(ge=0)
    url: str = Field(min_length=1, max_length=2048)
