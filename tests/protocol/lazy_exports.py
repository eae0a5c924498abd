"""What the tests of a package that loads its names on first use (``fogmesh.protocol``,
``fogmesh.service``, the agent's; ``fogmesh.protocol._lazy``) check of its three lists of
exports: ``__all__``, the imports a type checker reads and ``_HOMES`` for run time."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path
from types import ModuleType

__all__ = ["assert_one_home_each", "type_checking_imports"]


def type_checking_imports(package: ModuleType) -> dict[str, str]:
    """name -> module, from the ``if TYPE_CHECKING:`` block of ``package``'s ``__init__`` (a
    submodule imported from the package itself is its own home)."""
    assert package.__file__ is not None
    tree = ast.parse(Path(package.__file__).read_text())
    block = next(
        node
        for node in tree.body
        if isinstance(node, ast.If)
        and isinstance(node.test, ast.Name)
        and node.test.id == "TYPE_CHECKING"
    )
    names: dict[str, str] = {}
    for stmt in block.body:
        assert isinstance(stmt, ast.ImportFrom)
        assert stmt.module is not None
        for alias in stmt.names:
            if stmt.module == package.__name__:  # a submodule: from fogmesh.protocol import x
                names[alias.name] = alias.name
            else:
                names[alias.name] = stmt.module.removeprefix(f"{package.__name__}.")
    return names


def assert_one_home_each(package: ModuleType) -> None:
    """Each export of ``package`` is named once in ``__all__``, the three lists agree, and the
    package hands out its home module's own object (the module itself for a submodule)."""
    exports: list[str] = package.__all__
    homes: dict[str, str] = package._HOMES
    assert len(exports) == len(set(exports))
    assert set(exports) == set(homes)
    assert type_checking_imports(package) == homes
    for name, home in homes.items():
        module = importlib.import_module(f"{package.__name__}.{home}")
        expected = module if name == home else getattr(module, name)
        assert getattr(package, name) is expected, name
