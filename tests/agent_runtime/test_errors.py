"""Foreign errors are translated at the runtime boundary, chained, by one context manager."""

from __future__ import annotations

import pytest

from fogmesh.agent.runtime import (
    DockerRuntime,
    InstanceNotFound,
    PrepareFailed,
    RuntimeFailure,
    RuntimeUnavailable,
    translate_errors,
)
from fogmesh.agent.runtime.engine import EngineError, EngineUnreachable
from fogmesh.protocol.workload import RuntimeKind, WorkloadSpec


def test_docker_404_becomes_missing_and_is_chained() -> None:
    original = EngineError(404, "No such container: x")
    with (
        pytest.raises(InstanceNotFound) as caught,
        translate_errors("start x", missing=InstanceNotFound),
    ):
        raise original
    assert caught.value.__cause__ is original
    assert "start x" in str(caught.value)


def test_other_errors_become_the_given_failure() -> None:
    with pytest.raises(PrepareFailed) as caught, translate_errors("pull", failure=PrepareFailed):
        raise EngineError(500, "boom")
    assert isinstance(caught.value.__cause__, EngineError)
    with pytest.raises(RuntimeFailure) as generic, translate_errors("write"):
        raise PermissionError("denied")
    assert isinstance(generic.value.__cause__, PermissionError)
    with pytest.raises(RuntimeFailure, match="timed out"), translate_errors("wait"):
        raise TimeoutError


def test_unreachable_engine_error_becomes_runtime_unavailable() -> None:
    with pytest.raises(RuntimeUnavailable), translate_errors("list", missing=InstanceNotFound):
        raise EngineUnreachable("cannot connect")


def test_own_errors_pass_unchanged() -> None:
    own = InstanceNotFound("x")
    with pytest.raises(InstanceNotFound) as caught, translate_errors("op", failure=PrepareFailed):
        raise own
    assert caught.value is own


async def test_unreachable_engine_is_runtime_unavailable(tmp_path: object) -> None:
    """A DockerRuntime pointed at a socket nobody serves raises RuntimeUnavailable."""
    runtime = DockerRuntime("n-x", url=f"unix://{tmp_path}/nobody.sock")
    spec = WorkloadSpec(
        name="w", tenant="t", app="a", component="c", runtime=RuntimeKind.DOCKER, image="x:1"
    )
    try:
        with pytest.raises(RuntimeUnavailable) as caught:
            await runtime.status(spec.name)
        assert caught.value.__cause__ is not None
    finally:
        await runtime.close()
