"""The runtime plugins' exceptions, and the one place foreign errors are translated into them.

The exception tree::

    RuntimeFailure              a runtime could not do what was asked (a FogmeshError)
     ├── RuntimeUnavailable     the engine (dockerd) cannot be reached at all
     ├── InstanceNotFound       no instance of that workload on this node / runtime
     ├── InstanceExists         create() found an instance with a different spec hash
     ├── PrepareFailed          pull, fetch, checksum or unpack failed
     └── UnsafePath             put_file / a tarball tried to leave its directory

Plugins wrap every call into a foreign library (aiodocker, the OS, urllib) in
:func:`translate_errors`, so callers only ever see this tree; the original error is chained
(``raise ... from exc``) for logs.
"""

from __future__ import annotations

import sys
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, cast

from fogmesh.protocol.errors import FogmeshError

if TYPE_CHECKING:
    import aiohttp
    from aiodocker.exceptions import DockerError

__all__ = [
    "InstanceExists",
    "InstanceNotFound",
    "PrepareFailed",
    "RuntimeFailure",
    "RuntimeUnavailable",
    "UnsafePath",
    "translate_errors",
]

_DOCKER_UNREACHABLE = 900
"""The status aiodocker gives the DockerError it raises when it cannot connect to dockerd."""


class _NeverRaised(FogmeshError):
    """Stands in for a foreign library's error class while that library is not imported."""


def _foreign(module: str, name: str) -> type[Exception]:
    """``module.name`` if ``module`` is imported, else a class nothing raises.

    Looked up only when an error arrives: an agent running only native workloads never imports
    aiodocker or aiohttp (about 8 MB resident), and what was never imported cannot have raised.
    """
    found = sys.modules.get(module)
    return cast(type[Exception], getattr(found, name)) if found is not None else _NeverRaised


def _docker_error() -> type[DockerError]:
    return cast("type[DockerError]", _foreign("aiodocker.exceptions", "DockerError"))


def _client_error(name: str) -> type[aiohttp.ClientError]:
    return cast("type[aiohttp.ClientError]", _foreign("aiohttp", name))


class RuntimeFailure(FogmeshError):
    """A runtime plugin could not do what was asked; ``str(exc)`` says what and why."""


class RuntimeUnavailable(RuntimeFailure):
    """The runtime's engine cannot be reached (dockerd down, socket missing)."""


class InstanceNotFound(RuntimeFailure):
    """No instance of the named workload exists in this runtime on this node."""


class InstanceExists(RuntimeFailure):
    """An instance of the workload exists with another spec hash: remove it first."""


class PrepareFailed(RuntimeFailure):
    """An image could not be pulled, or an artefact fetched, verified or unpacked."""


class UnsafePath(RuntimeFailure):
    """A path (put_file, a tarball member) would escape the directory it must stay in."""


@contextmanager
def translate_errors(
    action: str,
    *,
    failure: type[RuntimeFailure] = RuntimeFailure,
    missing: type[RuntimeFailure] | None = None,
) -> Iterator[None]:
    """Turn foreign errors raised inside the block into :class:`RuntimeFailure` subclasses.

    ``action`` prefixes the message (e.g. ``"start web-0"``). Errors of this module's own tree
    pass unchanged. A Docker 404 or :class:`FileNotFoundError` becomes ``missing`` when given,
    a connection failure to the engine becomes :class:`RuntimeUnavailable`, and every other
    :class:`DockerError`, :class:`OSError`, :class:`tarfile.TarError`, timeout or aiohttp
    client error becomes ``failure``.
    """
    try:
        yield
    except RuntimeFailure:
        raise
    except _docker_error() as exc:
        if exc.status == _DOCKER_UNREACHABLE:
            raise RuntimeUnavailable(f"{action}: {exc.message}") from exc
        if exc.status == 404 and missing is not None:
            raise missing(f"{action}: {exc.message}") from exc
        raise failure(f"{action}: {exc.message}") from exc
    except _client_error("ClientConnectionError") as exc:
        raise RuntimeUnavailable(f"{action}: engine unreachable: {exc}") from exc
    except TimeoutError as exc:  # asyncio.TimeoutError is TimeoutError (an OSError) on 3.11
        raise failure(f"{action}: timed out") from exc
    except FileNotFoundError as exc:
        raise (missing or failure)(f"{action}: {exc}") from exc
    except (OSError, tarfile.TarError, _client_error("ClientError")) as exc:
        raise failure(f"{action}: {exc}") from exc
