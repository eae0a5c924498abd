"""``Runtime.get_file`` (the agent's ``download``) on both runtimes: what ``put_file`` wrote
comes back; a directory, a symlink, a path out of the workload, a missing or an oversized file
do not."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fogmesh.agent.runtime import (
    DockerRuntime,
    InstanceNotFound,
    NativeRuntime,
    RuntimeFailure,
    UnsafePath,
)
from fogmesh.agent.runtime.native_state import Layout
from fogmesh.protocol.workload import RuntimeKind, WorkloadSpec
from tests.agent_runtime.helpers import key

TENANT = "fmgetfile"  # one tenant user for every run (the native runtime creates it)
DATA = bytes(range(256)) * 64


def _spec(runtime: RuntimeKind, **extra: Any) -> WorkloadSpec:
    return WorkloadSpec.model_validate(
        {"name": "files", "tenant": TENANT, "app": "app", "component": "files",
         "runtime": runtime, **extra}
    )  # fmt: skip


@pytest.mark.docker
async def test_docker_get_file(docker_rt: DockerRuntime, busybox: str) -> None:
    spec = _spec(RuntimeKind.DOCKER, image=busybox, command=["sh", "-c", "exec sleep 300"])
    await docker_rt.prepare(spec)
    await docker_rt.create(spec)
    await docker_rt.start(key(spec))
    await docker_rt.put_file(key(spec), "/in/data.bin", DATA, 0o600)
    assert await docker_rt.get_file(key(spec), "/in/data.bin", len(DATA)) == DATA
    with pytest.raises(UnsafePath):
        await docker_rt.get_file(key(spec), "/in", len(DATA))  # a directory
    with pytest.raises(InstanceNotFound):
        await docker_rt.get_file(key(spec), "/in/none", len(DATA))
    with pytest.raises(RuntimeFailure):
        await docker_rt.get_file(key(spec), "/in/data.bin", len(DATA) - 1)
    await docker_rt.remove(key(spec))


async def test_native_get_file(native_rt: NativeRuntime, native_dir: Path) -> None:
    spec = _spec(RuntimeKind.NATIVE, executable="/bin/sh", command=["-c", "exec sleep 300"])
    await native_rt.prepare(spec)
    await native_rt.create(spec)
    await native_rt.put_file(key(spec), "/in/data.bin", DATA, 0o600)
    assert await native_rt.get_file(key(spec), "/in/data.bin", len(DATA)) == DATA
    work = Layout.of(native_dir, TENANT, "files").work
    (work / "in" / "shadow").symlink_to("/etc/shadow")  # what a workload could leave there
    for path in ("/in", "/in/shadow", "/../../../../etc/shadow"):
        with pytest.raises(UnsafePath):
            await native_rt.get_file(key(spec), path, len(DATA))
    with pytest.raises(InstanceNotFound):
        await native_rt.get_file(key(spec), "/in/none", len(DATA))
    with pytest.raises(RuntimeFailure):
        await native_rt.get_file(key(spec), "/in/data.bin", len(DATA) - 1)
    await native_rt.remove(key(spec))
