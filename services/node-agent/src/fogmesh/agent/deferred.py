"""Standard-library modules the agent's dependencies import at their top and an idle agent
never uses, loaded on first use instead (docs/agent.md, "Memory").

paho imports ``urllib.request`` for the proxy settings of SOCKS, which the agent runs without
(``socks`` is kept out); pydantic's plugin loader imports ``importlib.metadata`` for the entry
points it scans, which it does not scan with its plugins off. Between them they load
``http.client``, ``email``, ``zipfile``, ``csv``, ``importlib.resources``, ``tempfile``,
``shutil``, ``bz2`` and ``lzma``: 2.7 MB resident. ``shutil`` (which ``argparse`` loads) tries
``bz2`` and ``lzma`` for the archive formats it offers, 0.3 MB more; the agent's own archives
(``tarfile``) are uncompressed.

:func:`defer` puts a stand-in under the module's name: the first attribute looked up on it, or
the first call of one of the functions it is told a dependency takes by name at import time
(``from importlib.metadata import entry_points``), imports the real module, which then replaces
the stand-in in ``sys.modules`` and in its package. A process that uses the module gets it
whole; one that does not never loads it.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
import types
from collections.abc import Callable
from typing import Any

__all__ = ["DEFERRED", "NEEDS", "defer", "is_deferred", "load"]

DEFERRED: dict[str, tuple[str, ...]] = {
    "urllib.request": (),
    "importlib.metadata": ("entry_points",),
    "bz2": (),
    "lzma": (),
}
"""Module -> the functions a dependency imports from it by name before any use."""
NEEDS = {"bz2": "_bz2", "lzma": "_lzma"}
"""Module -> the extension it cannot work without (absent from some Python builds): no
stand-in without it, so ``try: import lzma`` fails as it should."""


_SWAP = threading.Lock()  # taking a stand-in out of ``sys.modules``


class _StandIn(types.ModuleType):
    """Takes the place of a module not imported yet; any attribute but the import system's
    dunders (``__path__``, looked up by ``from ... import``) imports it."""

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__") and attr.endswith("__"):
            raise AttributeError(attr)
        return getattr(load(self.__name__), attr)


def load(name: str) -> types.ModuleType:
    """The real module ``name``, imported now if only its stand-in is there.

    Safe from several threads at once: the stand-in is taken out under a lock, so no thread
    takes out a module another one is importing, and the import system hands a module that is
    still being imported to the others only once it is whole."""
    with _SWAP:
        if isinstance(sys.modules.get(name), _StandIn):
            del sys.modules[name]
    module = importlib.import_module(name)
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, module)
    return module


def _calls_later(name: str, function: str) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        return getattr(load(name), function)(*args, **kwargs)

    call.__name__ = call.__qualname__ = function
    return call


def defer(name: str, functions: tuple[str, ...] = ()) -> None:
    """Put a stand-in for the module ``name`` unless it is imported already; ``functions``:
    names a dependency imports from it before any use, each a function that imports the module
    when called."""
    if name in sys.modules:
        return
    parent, _, child = name.rpartition(".")
    if parent:
        importlib.import_module(parent)
    spec = importlib.util.find_spec(name)
    if spec is None or importlib.util.find_spec(NEEDS.get(name, name)) is None:
        return  # not there to import: its import fails as it would without a stand-in
    stand_in = _StandIn(name)
    stand_in.__spec__ = spec  # what importlib.util.find_spec answers for it
    for function in functions:
        setattr(stand_in, function, _calls_later(name, function))
    if parent:
        setattr(sys.modules[parent], child, stand_in)
    sys.modules[name] = stand_in


def is_deferred(name: str) -> bool:
    """Whether ``name`` is a stand-in still: nothing has used the module."""
    return isinstance(sys.modules.get(name), _StandIn)
