"""The runtime plugins' exceptions, and the one place foreign errors are translated into them.

The exception tree::

    RuntimeFailure              a runtime could not do what was asked (a FogmeshError)
     ├── RuntimeUnavailable     the engine (dockerd) cannot be reached at all
     ├── InstanceNotFound       no instance of that workload on this node / runtime
     ├── InstanceExists         create() found an instance with a different spec hash
     ├── PrepareFailed          pull, fetch, checksum or unpack failed
     └── UnsafePath             put_file / a tarball tried to leave its directory

Plugins wrap every call into something foreign (the Docker engine through
:mod:`fogmesh.agent.runtime.engine`, the OS, urllib) in :func:`translate_errors`, so callers
only ever see this tree; the original error is chained (``raise ... from exc``) for logs.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from fogmesh.agent.runtime.engine._errors import EngineError, EngineUnreachable
from fogmesh.protocol.errors import FogmeshError

__all__ = [
    "InstanceExists",
    "InstanceNotFound",
    "PrepareFailed",
    "RuntimeFailure",
    "RuntimeUnavailable",
    "UnsafePath",
    "translate_errors",
]


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
    pass unchanged. An engine 404 or :class:`FileNotFoundError` becomes ``missing`` when given,
    an engine that cannot be reached becomes :class:`RuntimeUnavailable`, and every other
    :class:`EngineError`, :class:`OSError`, :class:`tarfile.TarError` or timeout becomes
    ``failure``.
    """
    try:
        yield
    except RuntimeFailure:
        raise
    except EngineUnreachable as exc:
        raise RuntimeUnavailable(f"{action}: {exc.message}") from exc
    except EngineError as exc:
        if exc.status == 404 and missing is not None:
            raise missing(f"{action}: {exc.message}") from exc
        raise failure(f"{action}: {exc.message}") from exc
    except TimeoutError as exc:  # asyncio.TimeoutError is TimeoutError (an OSError) on 3.11
        raise failure(f"{action}: timed out") from exc
    except FileNotFoundError as exc:
        raise (missing or failure)(f"{action}: {exc}") from exc
    except OSError as exc:
        raise failure(f"{action}: {exc}") from exc
    except Exception as exc:
        if not _tar_error(exc):
            raise
        raise failure(f"{action}: {exc}") from exc


def _tar_error(exc: Exception) -> bool:
    """Whether ``exc`` is a :class:`tarfile.TarError`. Only code that has imported
    :mod:`tarfile` can raise one, so it is not imported here (an idle agent packs nothing)."""
    tar = sys.modules.get("tarfile")
    return tar is not None and isinstance(exc, tar.TarError)
