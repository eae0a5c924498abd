"""The agent's packages that hand out their names on first use (``fogmesh.agent``, whose
entry point must load nothing before it has decided what the process keeps out, and
``fogmesh.agent.runtime.engine``, whose client a native-only agent never loads) name each
export once, in ``__all__``, the type checker's imports and ``_HOMES`` alike."""

from __future__ import annotations

from types import ModuleType

import pytest

import fogmesh.agent
import fogmesh.agent.runtime.engine
from tests.protocol.lazy_exports import assert_one_home_each


@pytest.mark.parametrize("package", [fogmesh.agent, fogmesh.agent.runtime.engine])
def test_every_export_has_one_home_and_is_that_modules_own(package: ModuleType) -> None:
    assert_one_home_each(package)


def test_a_runtime_is_its_modules_own_and_an_unknown_name_an_attribute_error() -> None:
    from fogmesh.agent import runtime
    from fogmesh.agent.runtime.docker import DockerRuntime
    from fogmesh.agent.runtime.native import NativeRuntime

    assert (runtime.DockerRuntime, runtime.NativeRuntime) == (DockerRuntime, NativeRuntime)
    with pytest.raises(AttributeError, match="NoSuchRuntime"):
        runtime.NoSuchRuntime  # type: ignore[attr-defined]  # noqa: B018
