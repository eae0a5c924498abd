"""The contract loads on demand (docs/agent.md, "Memory"): ``fogmesh.protocol`` imports a name's
module when the name is first asked for, and every model builds its validator on first use.

The package names each of its exports three times (``__all__``, the imports a type checker
reads, ``_HOMES`` for run time); these tests keep the three the same."""

from __future__ import annotations

import importlib
import json
import pkgutil
import subprocess
import sys

import pytest
from pydantic import BaseModel

from fogmesh import protocol
from fogmesh.protocol._model import Model
from tests.protocol.lazy_exports import assert_one_home_each


def test_every_export_has_one_home_and_is_that_modules_own() -> None:
    assert_one_home_each(protocol)


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="NoSuchName"):
        protocol.NoSuchName  # type: ignore[attr-defined]  # noqa: B018


LOADED = """
import json, sys
import fogmesh.protocol
before = sorted(m for m in sys.modules if m.startswith("fogmesh.protocol."))
from fogmesh.protocol import DesiredState, Heartbeat, topics
after = sorted(m for m in sys.modules if m.startswith("fogmesh.protocol."))
print(json.dumps([before, after]))
"""


def test_a_name_loads_its_module_and_what_that_module_imports_only() -> None:
    """In a fresh interpreter (this one has loaded the whole contract)."""
    done = subprocess.run(
        [sys.executable, "-c", LOADED], capture_output=True, text=True, check=True, timeout=60
    )
    before, after = json.loads(done.stdout)
    assert before == ["fogmesh.protocol._lazy"]  # the package's own first-use helper
    assert {"fogmesh.protocol.workload", "fogmesh.protocol.node"} <= set(after)
    heavy = {"manifest", "apps", "queries", "catalogue", "artefacts", "migration"}
    assert not {f"fogmesh.protocol.{m}" for m in heavy} & set(after)


def _models() -> list[type[BaseModel]]:
    found: list[type[BaseModel]] = []
    for info in pkgutil.iter_modules(protocol.__path__):
        module = importlib.import_module(f"fogmesh.protocol.{info.name}")
        found.extend(
            obj
            for obj in vars(module).values()
            if isinstance(obj, type)
            and issubclass(obj, BaseModel)
            and obj.__module__ == module.__name__
        )
    return found


def test_every_model_of_the_contract_builds_its_validator_on_first_use() -> None:
    models = _models()
    assert len(models) > 100
    strays = sorted(m.__qualname__ for m in models if not issubclass(m, Model))
    assert not strays, f"models not deriving from fogmesh.protocol._model.Model: {strays}"
    assert all(m.model_config.get("defer_build") for m in models)
