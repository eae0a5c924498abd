"""Fixtures for the runtime plugin tests: a per-run label, the busybox image, runtimes."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from fogmesh.agent.runtime import DockerRuntime, NativeRuntime
from tests.agent_runtime.helpers import RUN_LABEL, docker_cleanup, kill_recorded
from tests.support.images import build_busybox_image


@pytest.fixture
def run_id() -> str:
    """A short id unique to this test: node names, tenants and the cleanup label use it."""
    return uuid.uuid4().hex[:8]


@pytest.fixture(scope="session")
def busybox() -> str:
    """The locally built busybox test image (tag)."""
    done = subprocess.run(["docker", "info"], capture_output=True, check=False)
    if done.returncode != 0:
        pytest.fail("dockerd does not answer; run .ci/docker.sh")
    return build_busybox_image()


@pytest.fixture
async def docker_rt(run_id: str, busybox: str) -> AsyncIterator[DockerRuntime]:
    """A DockerRuntime for node ``n-{run_id}``; everything it made is removed afterwards."""
    runtime = DockerRuntime(f"n-{run_id}", extra_labels={RUN_LABEL: run_id})
    try:
        yield runtime
    finally:
        await runtime.close()
        docker_cleanup(run_id)


@pytest.fixture
def native_dir(tmp_path: Path) -> Iterator[Path]:
    """A state dir; any process still recorded there is killed afterwards."""
    state = tmp_path / "native"
    yield state
    kill_recorded(state)


@pytest.fixture
def native_rt(native_dir: Path, run_id: str) -> NativeRuntime:
    """A NativeRuntime on a fresh state dir."""
    return NativeRuntime(native_dir, f"n-{run_id}")
