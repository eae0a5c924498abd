"""The one way a fogmesh package hands out its names on first use (module ``__getattr__``).

A package that wants a process to load only what it uses (docs/agent.md, "Memory") lists its
lazy names' modules in ``_HOMES`` (name -> submodule, built by :func:`homes`), keeps an ``if
TYPE_CHECKING:`` block of the same imports for a type checker, and sets ``__getattr__`` to
:func:`lazy_exports`'s function. ``tests/protocol/lazy_exports.py`` checks that the lists agree.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib import import_module
from typing import Any

__all__ = ["homes", "lazy_exports"]


def homes(table: Mapping[str, str]) -> dict[str, str]:
    """name -> submodule, from submodule -> its names (separated by spaces)."""
    return {name: module for module, names in table.items() for name in names.split()}


def lazy_exports(
    package: str, namespace: dict[str, Any], name_homes: Mapping[str, str]
) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``: a name of ``name_homes`` is imported from its
    submodule when first asked for (the submodule itself when the name is the submodule's),
    then kept in ``namespace`` (the package's ``globals()``), so it is looked up only once."""

    def resolve(name: str) -> Any:
        home = name_homes.get(name)
        if home is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = import_module(f"{package}.{home}")
        value = module if name == home else getattr(module, name)
        namespace[name] = value
        return value

    return resolve
