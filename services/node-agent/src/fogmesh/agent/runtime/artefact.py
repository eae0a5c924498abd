"""Native artefacts (paper 4.1): fetch a ``.tar`` from a file:// or http(s):// URL, verify its
sha256, unpack it safely into a cache shared by all instances.

The cache lives at ``{state_dir}/.artefacts/{key}/`` where ``key`` is the artefact's sha256
(or ``url-{sha256(url)}`` for an artefact without a checksum, which is then fetched again on
every prepare). An unpacked tree is complete once its ``.fogmesh-ready`` marker exists.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import tempfile
import urllib.parse
from pathlib import Path
from typing import BinaryIO, cast

from fogmesh.agent.runtime.errors import PrepareFailed, translate_errors
from fogmesh.agent.runtime.tarutil import extract_safely, safe_join
from fogmesh.protocol.workload import Artefact

__all__ = ["READY_MARKER", "artefact_dir", "fetch_artefact"]

READY_MARKER = ".fogmesh-ready"
_CHUNK = 1 << 16


def artefact_dir(cache: Path, artefact: Artefact) -> Path:
    """Where ``artefact`` is (or will be) unpacked inside ``cache``."""
    if artefact.digest:
        return cache / artefact.digest
    return cache / f"url-{hashlib.sha256(str(artefact.url).encode()).hexdigest()}"


async def fetch_artefact(
    artefact: Artefact,
    cache: Path,
    *,
    timeout: float = 300.0,
    max_bytes: int = 2 << 30,
    source: Path | None = None,
) -> Path:
    """Fetch, verify and unpack ``artefact`` (once, when it has a checksum); its directory.

    ``source`` is the local copy of a ref the agent fetched from its site's cache
    (:mod:`fogmesh.agent.artefact_fetch`); without it the artefact's URL is read.
    Raises :class:`PrepareFailed` for a bad URL scheme, a download error, a checksum mismatch,
    an archive larger than ``max_bytes``, a member escaping the directory, or a missing
    ``command_script``.
    """
    where = artefact.ref or artefact.url
    with translate_errors(f"fetch {where}", failure=PrepareFailed):
        return await asyncio.to_thread(_fetch, artefact, cache, timeout, max_bytes, source)


def _fetch(
    artefact: Artefact, cache: Path, timeout: float, max_bytes: int, source: Path | None
) -> Path:
    dest = artefact_dir(cache, artefact)
    if artefact.digest and (dest / READY_MARKER).exists():
        return dest
    cache.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=cache, prefix=".download-", suffix=".tar")
    tmp = Path(tmp_name)
    url = source.as_uri() if source is not None else str(artefact.url)
    if artefact.ref is not None and source is None:
        raise PrepareFailed(f"artefact {artefact.ref} was not fetched from the site's cache")
    try:
        with os.fdopen(fd, "wb") as out:
            digest = _download(url, out, timeout, max_bytes)
        if artefact.digest and digest != artefact.digest:
            raise PrepareFailed(
                f"checksum mismatch for {artefact.ref or url}: got {digest}, want {artefact.digest}"
            )
        _unpack(tmp, dest, artefact.command_script)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def _download(url: str, out: BinaryIO, timeout: float, max_bytes: int) -> str:
    parsed = urllib.parse.urlparse(url)
    digest = hashlib.sha256()
    if parsed.scheme == "file":
        source: BinaryIO = Path(urllib.parse.unquote(parsed.path)).open("rb")  # noqa: SIM115
    elif parsed.scheme in ("http", "https"):
        from urllib.request import urlopen  # on first use: an idle agent downloads nothing

        source = cast(BinaryIO, urlopen(url, timeout=timeout))  # noqa: S310
    else:
        raise PrepareFailed(f"unsupported artefact URL scheme {parsed.scheme!r}: {url}")
    total = 0
    with source:
        while chunk := source.read(_CHUNK):
            total += len(chunk)
            if total > max_bytes:
                raise PrepareFailed(f"artefact {url} is larger than {max_bytes} bytes")
            digest.update(chunk)
            out.write(chunk)
    return digest.hexdigest()


def _unpack(archive: Path, dest: Path, script: str) -> None:
    import tarfile  # on first use: an idle agent unpacks nothing

    staging = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}-"))
    try:
        with tarfile.open(archive, mode="r:*") as tar:
            extract_safely(tar, staging)
        if not safe_join(staging, script).is_file():
            raise PrepareFailed(f"artefact has no command script {script!r}")
        (staging / READY_MARKER).touch()
        if dest.exists():
            shutil.rmtree(dest)
        staging.rename(dest)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
