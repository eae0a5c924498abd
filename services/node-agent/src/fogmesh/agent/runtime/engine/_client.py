"""The agent's Docker Engine API client: the calls the Docker runtime makes, and no more.

Paths are unversioned, so the engine speaks its own current API version (what a client that
asks ``/version`` first and pins it would get). No call waits forever. A call is bounded as a
whole by ``timeout`` of the client (60 s) unless it takes its own (pulls, loads, stops, forced
removals); a call that streams a body of any size (container archives both ways, logs) is
bounded instead by the longest silence: ``timeout`` with no byte sent or received, so a large
volume on a slow disk takes as long as it needs while a stalled engine is given up on. An
engine that never answers a request (no head within its bound) is :class:`EngineUnreachable`.
An answer of status >= 400 raises :class:`EngineError` with the engine's ``message``; a pull's
or load's in-band error does too (status 500).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import tempfile
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from fogmesh.agent.runtime.engine._address import Address, engine_address
from fogmesh.agent.runtime.engine._errors import NO_ANSWER, EngineError, EngineUnreachable
from fogmesh.agent.runtime.engine._frames import demux, json_lines, raise_stream_error
from fogmesh.agent.runtime.engine._http import Body, Response, request

if TYPE_CHECKING:
    import tarfile

__all__ = ["JSON_LIMIT", "SPOOL_BYTES", "Engine", "Filters", "is_regular_file"]

JSON_LIMIT = 64 << 20
"""The largest JSON answer read (a listing of thousands of containers stays far below)."""
SPOOL_BYTES = 8 << 20
"""An archive up to this size is held in memory, a larger one in an unlinked temporary file."""
_ERROR_LIMIT = 1 << 20
_GO_FILE_TYPE = (1 << 31) | (1 << 27) | (1 << 26) | (1 << 25) | (1 << 24) | (1 << 21) | (1 << 19)
"""Go's ``os.ModeType`` bits (dir, symlink, device, pipe, socket, char device, irregular)."""

Filters = Mapping[str, Sequence[str]]
"""Docker's list filters, e.g. ``{"label": ["fogmesh.node=n1"]}``."""


def is_regular_file(stat: Mapping[str, Any]) -> bool:
    """Whether a path stat of ``GET /containers/{id}/archive`` is a regular file."""
    return not int(stat.get("mode", 0)) & _GO_FILE_TYPE


def _segment(text: str) -> str:
    return quote(text, safe="")


def _image(name: str) -> str:
    return quote(name, safe="/:@")


def _filters(filters: Filters | None) -> dict[str, str]:
    return {"filters": json.dumps({k: list(v) for k, v in filters.items()})} if filters else {}


class Engine:
    """One Docker engine, reached at ``url`` (see
    :func:`~fogmesh.agent.runtime.engine.engine_address`)."""

    def __init__(self, url: str | None = None, *, timeout: float = 60.0) -> None:
        self.address: Address = engine_address(url)
        self.timeout = timeout

    async def close(self) -> None:
        """Nothing to release: no connection outlives its request."""

    # -- the exchange -------------------------------------------------------------------------

    @asynccontextmanager
    async def open(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: Body = None,
        content_type: str | None = None,
        timeout: float | None = None,
        idle: bool = False,
    ) -> AsyncIterator[Response]:
        """``method /path?query`` answered below 400: the response, its body unread. The whole
        exchange (with what the block reads) is bounded by ``timeout`` (the client's when
        None); with ``idle`` only the time with no piece of a body sent or received is.
        :class:`EngineUnreachable` when the bound passes before the answer's head came."""
        target = f"/{path}?{urlencode(query)}" if query else f"/{path}"
        limit = self.timeout if timeout is None else timeout
        answered = False
        try:
            async with asyncio.timeout(limit) as scope:
                loop = asyncio.get_running_loop()

                def progress() -> None:
                    scope.reschedule(loop.time() + limit)

                response = await request(
                    self.address,
                    method,
                    target,
                    body=body,
                    content_type=content_type,
                    progress=progress if idle else None,
                )
                answered = True
                try:
                    if response.status >= 400:
                        raise await _refusal(response)
                    yield response
                finally:
                    response.close()
        except TimeoutError as exc:
            if answered or not scope.expired():
                raise
            raise EngineUnreachable(
                f"the engine did not answer {method} /{path} within {limit:g} s"
            ) from exc

    async def call(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        json_body: Any = None,
        timeout: float | None = None,
    ) -> Any:
        """The JSON answer (``None`` if empty) of a call with an optional JSON body."""
        body = None if json_body is None else json.dumps(json_body).encode()
        kind = None if json_body is None else "application/json"
        async with self.open(
            method, path, query=query, body=body, content_type=kind, timeout=timeout
        ) as response:
            return await response.json(JSON_LIMIT)

    async def version(self) -> dict[str, Any]:
        """``GET /version``."""
        return dict(await self.call("GET", "version"))

    # -- containers ---------------------------------------------------------------------------

    async def containers(self, filters: Filters | None = None) -> list[dict[str, Any]]:
        """Every container (any state) the filters match."""
        query = {"all": "1", **_filters(filters)}
        return list(await self.call("GET", "containers/json", query=query) or [])

    async def create_container(self, config: Mapping[str, Any], name: str) -> str:
        """The id of a new container ``name``."""
        answer = await self.call(
            "POST", "containers/create", query={"name": name}, json_body=config
        )
        return str(answer["Id"])

    async def inspect_container(self, cid: str) -> dict[str, Any]:
        """``docker inspect`` of a container."""
        return dict(await self.call("GET", f"containers/{_segment(cid)}/json"))

    async def start_container(self, cid: str) -> None:
        """Start a container (a no-op when it runs)."""
        await self.call("POST", f"containers/{_segment(cid)}/start")

    async def stop_container(self, cid: str, grace_s: int) -> None:
        """SIGTERM, then SIGKILL after ``grace_s`` (a no-op when it is not running)."""
        await self.call(
            "POST",
            f"containers/{_segment(cid)}/stop",
            query={"t": str(grace_s)},
            timeout=grace_s + self.timeout,
        )

    async def remove_container(
        self, cid: str, *, force: bool = False, timeout: float | None = None
    ) -> None:
        """Remove a container (killed first with ``force``); a large one on a slow disk may
        take longer than the client's ``timeout``, so the caller may give its own."""
        query = {"force": "1"} if force else None
        await self.call("DELETE", f"containers/{_segment(cid)}", query=query, timeout=timeout)

    async def logs(self, cid: str, *, tail: int, since: int | None = None) -> str:
        """The last ``tail`` lines of a container's stdout and stderr (written after ``since``),
        interleaved as written; its containers have no TTY, so the stream is multiplexed.
        Bounded by the longest silence and by :data:`JSON_LIMIT` bytes."""
        query = {"stdout": "1", "stderr": "1", "tail": str(tail)}
        if since is not None:
            query["since"] = str(since)
        out = bytearray()
        url = f"containers/{_segment(cid)}/logs"
        async with self.open("GET", url, query=query, idle=True) as answer:
            async for _stream, payload in demux(answer.chunks()):
                out += payload
                if len(out) > JSON_LIMIT:
                    raise EngineError(NO_ANSWER, f"logs longer than {JSON_LIMIT} bytes")
        return out.decode("utf-8", errors="replace")

    async def changes(self, cid: str) -> list[dict[str, Any]]:
        """``docker diff``: the paths a container changed (Kind 0 changed, 1 added, 2 deleted)."""
        return list(await self.call("GET", f"containers/{_segment(cid)}/changes") or [])

    async def stats(self, cid: str) -> dict[str, Any]:
        """One ``docker stats`` sample (with the previous one in ``precpu_stats``)."""
        path = f"containers/{_segment(cid)}/stats"
        return dict(await self.call("GET", path, query={"stream": "0"}) or {})

    @asynccontextmanager
    async def get_archive(
        self,
        cid: str,
        path: str,
        *,
        check: Callable[[dict[str, Any]], None] | None = None,
        max_bytes: int | None = None,
    ) -> AsyncIterator[tarfile.TarFile]:
        """A tar of ``path`` in the container (plain tar, as dockerd sends it), for the block:
        streamed into memory up to :data:`SPOOL_BYTES` and on into an unlinked temporary file
        beyond (written off the event loop), closed when the block ends, however it ends.
        ``check`` sees the path's stat (the engine's ``X-Docker-Container-Path-Stat``) before
        any of the tar is read and may raise to refuse it; more than ``max_bytes`` of tar
        raises :class:`EngineError`. Bounded by the longest silence, not as a whole."""
        url = f"containers/{_segment(cid)}/archive"
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as spool:
            async with self.open("GET", url, query={"path": path}, idle=True) as answer:
                if check is not None:
                    check(_path_stat(answer))
                size = 0
                async for piece in answer.chunks():
                    size += len(piece)
                    if max_bytes is not None and size > max_bytes:
                        raise EngineError(NO_ANSWER, f"archive of {path} over {max_bytes} bytes")
                    await _spool_write(spool, piece, size)
            spool.seek(0)
            import tarfile  # on first use: an idle agent reads no archive

            with tarfile.open(fileobj=spool, mode="r:") as archive:
                yield archive

    async def put_archive(self, cid: str, path: str, data: bytes | Path) -> None:
        """Unpack a tar (bytes, or a file sent in pieces) at ``path`` in the container;
        bounded by the longest silence, not as a whole."""
        async with self.open(
            "PUT",
            f"containers/{_segment(cid)}/archive",
            query={"path": path},
            body=data,
            content_type="application/x-tar",
            idle=True,
        ):
            pass

    # -- images -------------------------------------------------------------------------------

    async def inspect_image(self, name: str) -> dict[str, Any]:
        """``docker image inspect``."""
        return dict(await self.call("GET", f"images/{_image(name)}/json"))

    async def pull(self, image: str, *, timeout: float) -> list[Any]:
        """``docker pull image`` (tag ``latest`` when it names none); its progress messages."""
        last = image.rsplit("/", 1)[-1]
        query = {"fromImage": image}
        if ":" not in last and "@" not in last:
            query["tag"] = "latest"
        return await self._progress("POST", "images/create", query=query, timeout=timeout)

    async def load(self, archive: Path, *, timeout: float) -> list[Any]:
        """``docker load`` of an image tar, sent from the file in pieces; its messages."""
        return await self._progress(
            "POST",
            "images/load",
            query={"quiet": "1"},
            body=archive,
            content_type="application/x-tar",
            timeout=timeout,
        )

    async def tag(self, image: str, repo: str, tag: str) -> None:
        """Tag ``image`` as ``repo:tag``."""
        await self.call("POST", f"images/{_image(image)}/tag", query={"repo": repo, "tag": tag})

    async def images(self, filters: Filters | None = None) -> list[dict[str, Any]]:
        """The images the filters match."""
        return list(await self.call("GET", "images/json", query=_filters(filters)) or [])

    async def remove_image(self, name: str, *, force: bool = False) -> None:
        """Untag ``name`` (and remove the image with its last name)."""
        await self.call("DELETE", f"images/{_image(name)}", query={"force": "1" if force else "0"})

    # -- volumes and networks -----------------------------------------------------------------

    async def volumes(self, filters: Filters | None = None) -> list[dict[str, Any]]:
        """The volumes the filters match."""
        answer = await self.call("GET", "volumes", query=_filters(filters)) or {}
        return list(answer.get("Volumes") or [])

    async def create_volume(self, config: Mapping[str, Any]) -> None:
        """Create a volume (a no-op when it exists)."""
        await self.call("POST", "volumes/create", json_body=config)

    async def remove_volume(self, name: str) -> None:
        """Remove a volume."""
        await self.call("DELETE", f"volumes/{_segment(name)}")

    async def networks(self, filters: Filters | None = None) -> list[dict[str, Any]]:
        """The networks the filters match."""
        return list(await self.call("GET", "networks", query=_filters(filters)) or [])

    async def create_network(self, config: Mapping[str, Any]) -> str:
        """The id of a new network."""
        return str((await self.call("POST", "networks/create", json_body=config))["Id"])

    async def inspect_network(self, name: str) -> dict[str, Any]:
        """``docker network inspect``."""
        return dict(await self.call("GET", f"networks/{_segment(name)}"))

    async def remove_network(self, name: str) -> None:
        """Remove a network."""
        await self.call("DELETE", f"networks/{_segment(name)}")

    # -- helpers ------------------------------------------------------------------------------

    async def _progress(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str],
        body: Body = None,
        content_type: str | None = None,
        timeout: float,
    ) -> list[Any]:
        messages: list[Any] = []
        async with self.open(
            method, path, query=query, body=body, content_type=content_type, timeout=timeout
        ) as answer:
            async for message in json_lines(answer.chunks()):
                raise_stream_error(message)
                if len(messages) < 1000:  # a pull's progress lines, kept bounded
                    messages.append(message)
        return messages


async def _spool_write(spool: IO[bytes], piece: bytes, size: int) -> None:
    """Write ``piece`` (the tar's first ``size`` bytes end with it): in memory at once, to disk
    (the write that rolls the spool over, and every one after) in a thread."""
    if size <= SPOOL_BYTES:
        spool.write(piece)
    else:
        await asyncio.to_thread(spool.write, piece)


async def _refusal(response: Response) -> EngineError:
    try:
        data = await response.read(_ERROR_LIMIT)
    except EngineError as exc:
        return EngineError(response.status, f"(answer unreadable: {exc.message})")
    text = data.decode("utf-8", errors="replace").strip()
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and parsed.get("message"):
        text = str(parsed["message"])
    return EngineError(response.status, text or f"HTTP {response.status}")


def _path_stat(response: Response) -> dict[str, Any]:
    raw = response.headers.get("x-docker-container-path-stat", "")
    try:
        stat = json.loads(base64.b64decode(raw)) if raw else {}
    except (binascii.Error, ValueError):
        stat = {}
    return stat if isinstance(stat, dict) else {}
