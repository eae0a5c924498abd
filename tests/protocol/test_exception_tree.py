"""Every exception class defined under ``fogmesh.*`` derives from ``FogmeshError``, so a caller
can catch everything fogmesh raises on purpose with one clause (the tree is drawn in
``fogmesh.protocol.errors``)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import fogmesh
from fogmesh.protocol.errors import FogmeshError


def _modules() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(fogmesh.__path__, prefix="fogmesh."):
        if info.name.rsplit(".", 1)[-1] == "__main__":
            continue  # running it is its only effect
        names.append(info.name)
    return names


def test_every_fogmesh_exception_derives_from_fogmesh_error() -> None:
    seen: set[type[BaseException]] = set()
    for name in _modules():
        module = importlib.import_module(name)
        for _attr, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, BaseException) and obj.__module__ == module.__name__:
                seen.add(obj)
    strays = sorted(
        f"{cls.__module__}.{cls.__qualname__}" for cls in seen if not issubclass(cls, FogmeshError)
    )
    assert not strays, f"exceptions outside the FogmeshError tree: {strays}"
    # the walk found the packages' own errors, so it looked where they live
    found = {cls.__name__ for cls in seen}
    assert {"RuntimeFailure", "IllegalTransition", "BadCursor", "CliError"} <= found
    assert {"MeshConfigError", "Refusal", "RemoteError"} <= found
