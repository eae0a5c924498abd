"""The Docker runtime against the real dockerd, with a locally built busybox image."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from fogmesh.agent.runtime import (
    DockerRuntime,
    InstanceExists,
    InstanceNotFound,
    InstanceState,
    PrepareFailed,
    Runtime,
)
from fogmesh.protocol.workload import RuntimeKind, VolumeSpec, WorkloadSpec
from tests.agent_runtime.helpers import RUN_LABEL, eventually, key
from tests.support.images import LocalRegistry, image_exists

pytestmark = pytest.mark.docker

LOOP = ["sh", "-c", 'echo "hello $FOGMESH_WORKLOAD $GREETING"; echo oops >&2; exec sleep 300']


def docker_spec(name: str, image: str, tenant: str, **extra: Any) -> WorkloadSpec:
    """A Docker spec of app ``app``, component ``name``."""
    return WorkloadSpec.model_validate(
        {
            "name": name,
            "tenant": tenant,
            "app": "app",
            "component": name,
            "runtime": RuntimeKind.DOCKER,
            "image": image,
            "command": LOOP,
            **extra,
        }
    )


def inspect(kind: str, name: str) -> dict[str, Any]:
    """``docker {kind} inspect name`` as JSON."""
    out = subprocess.run(
        ["docker", kind, "inspect", name], capture_output=True, text=True, check=True
    )
    value: dict[str, Any] = json.loads(out.stdout)[0]
    return value


def docker_names(*args: str) -> list[str]:
    """Names printed by ``docker ps``-like commands with ``--format {{.Name(s)}}``."""
    out = subprocess.run(["docker", *args], capture_output=True, text=True, check=True)
    return out.stdout.split()


async def state_is(rt: DockerRuntime, name: str, state: InstanceState) -> bool:
    return (await rt.status(name)).state is state


async def test_lifecycle_limits_labels_logs_files(
    docker_rt: DockerRuntime, busybox: str, run_id: str
) -> None:
    """prepare/create/start/status/logs/put_file/usage/stop/remove with a real container."""
    assert isinstance(docker_rt, Runtime)
    tenant = f"t{run_id}"
    spec = docker_spec(
        "web",
        busybox,
        tenant,
        env={"GREETING": "hi"},
        cpu_limit=0.5,
        memory_limit_bytes=64 << 20,
        volumes=[VolumeSpec(name="data", mount_path="/data")],
    )
    await docker_rt.prepare(spec)
    created = await docker_rt.create(spec)
    assert created.state is InstanceState.CREATED
    assert (await docker_rt.create(spec)).runtime_id == created.runtime_id  # idempotent
    other = spec.model_copy(update={"env": {"GREETING": "changed"}})
    with pytest.raises(InstanceExists):
        await docker_rt.create(other)

    cname = f"fm-n-{run_id}-{tenant}-app-web-0"
    info = inspect("container", cname)
    host = info["HostConfig"]
    assert host["NanoCpus"] == 500_000_000
    assert host["Memory"] == 64 << 20
    assert host["RestartPolicy"]["Name"] == "no"
    # nothing of the host: not privileged, no binds, no devices or added capabilities
    assert host["Privileged"] is False
    assert not host.get("Binds")
    assert not host.get("Devices")
    assert not host.get("CapAdd")
    assert host["SecurityOpt"] == ["no-new-privileges:true"]
    assert host["NetworkMode"] != "host"
    assert host["PidMode"] in ("", "private")
    assert all(m["Type"] == "volume" for m in info["Mounts"])
    # by name: a deleted network's id would stay in the container for good
    assert inspect("network", host["NetworkMode"])["Name"] == f"fm-{tenant}"
    labels = info["Config"]["Labels"]
    assert labels["fogmesh.workload"] == "web"
    assert labels["fogmesh.tenant"] == tenant
    assert labels["fogmesh.node"] == f"n-{run_id}"
    assert labels["fogmesh.spec-hash"] == spec.spec_hash()
    assert "GREETING=hi" in info["Config"]["Env"]
    assert [m["Name"] for m in info["Mounts"]] == [f"{cname}-data"]

    started = await docker_rt.start(key(spec))
    assert started.state is InstanceState.RUNNING
    assert started.started_at is not None
    assert cname in docker_names("ps", "--format", "{{.Names}}")

    async def logged() -> bool:
        lines = await docker_rt.logs(key(spec), tail=10)
        return "hello web hi" in lines and "oops" in lines

    await eventually(logged, what="container logs")
    await docker_rt.put_file(key(spec), "/data/in/hello.txt", b"file-content", 0o640)
    cat = subprocess.run(
        ["docker", "exec", cname, "cat", "/data/in/hello.txt"],
        capture_output=True,
        check=True,
    )
    assert cat.stdout == b"file-content"
    usage = await docker_rt.usage(key(spec))
    assert usage.memory_bytes > 0

    # a restarted agent (new runtime object, same node) finds its container again
    again = DockerRuntime(f"n-{run_id}")
    try:
        found = await again.list_instances()
        assert [(s.name, s.state, s.runtime_id) for s in found] == [
            (f"{tenant}/web", InstanceState.RUNNING, started.runtime_id)
        ]
    finally:
        await again.close()

    stopped = await docker_rt.stop(key(spec), timeout=2)
    assert stopped.state is InstanceState.EXITED
    assert stopped.exit_code is not None
    await docker_rt.remove(key(spec))
    assert (await docker_rt.status(key(spec))).state is InstanceState.ABSENT
    assert cname not in docker_names("ps", "-a", "--format", "{{.Names}}")
    assert f"{cname}-data" not in docker_names("volume", "ls", "--format", "{{.Name}}")
    assert f"fm-{tenant}" not in docker_names("network", "ls", "--format", "{{.Name}}")
    with pytest.raises(InstanceNotFound):
        await docker_rt.start(key(spec))


async def test_pull_from_local_registry(
    docker_rt: DockerRuntime, busybox: str, run_id: str, tmp_path: Path
) -> None:
    """prepare pulls an image from a registry on 127.0.0.1; a missing one is PrepareFailed."""
    registry = LocalRegistry(tmp_path / "registry").start()
    try:
        ref = registry.push(busybox, tag=f"pull-{run_id}")
        assert not image_exists(ref)
        spec = docker_spec("pulled", ref, f"t{run_id}", command=["true"])
        await docker_rt.prepare(spec)
        assert image_exists(ref)
        missing = docker_spec("missing", f"{registry.address}/nope:1", f"t{run_id}")
        with pytest.raises(PrepareFailed):
            await docker_rt.prepare(missing)
    finally:
        registry.stop()
        subprocess.run(["docker", "rmi", ref], capture_output=True, check=False)


async def test_two_tenants_get_separate_networks(
    docker_rt: DockerRuntime, busybox: str, run_id: str
) -> None:
    """The same workload name, app and component in two tenants: two containers, networks and
    volumes, each found by its own (tenant, name) key."""
    tenants = [f"a{run_id}", f"b{run_id}"]
    volumes = [VolumeSpec(name="data", mount_path="/data")]
    specs = [docker_spec("svc", busybox, t, volumes=volumes) for t in tenants]
    for spec in specs:
        await docker_rt.prepare(spec)
        await docker_rt.create(spec)
        await docker_rt.start(key(spec))
    await docker_rt.put_file(key(specs[0]), "/data/mine.txt", b"a's")
    for tenant in tenants:
        cname = f"fm-n-{run_id}-{tenant}-app-svc-0"
        info = inspect("container", cname)
        assert info["Config"]["Labels"]["fogmesh.tenant"] == tenant
        assert [m["Name"] for m in info["Mounts"]] == [f"{cname}-data"]
        networks = info["NetworkSettings"]["Networks"]
        assert list(networks) == [f"fm-{tenant}"]
        members = inspect("network", f"fm-{tenant}")["Containers"].values()
        assert [m["Name"] for m in members] == [cname]
        assert inspect("network", f"fm-{tenant}")["Labels"][RUN_LABEL] == run_id
    listed = await docker_rt.list_instances()
    assert sorted(s.name for s in listed) == sorted(key(s) for s in specs)
    assert len({s.runtime_id for s in listed}) == 2
    archive = await docker_rt.snapshot(key(specs[1]))
    assert b"a's" not in archive  # the other tenant's volume holds nothing of the first's
    for spec in specs:
        await docker_rt.stop(key(spec), timeout=1)
        await docker_rt.remove(key(spec))
    assert await docker_rt.list_instances() == []


@pytest.mark.parametrize("with_volume", [True, False], ids=["volume", "rootfs"])
async def test_snapshot_restore_keeps_file(
    docker_rt: DockerRuntime, busybox: str, run_id: str, with_volume: bool
) -> None:
    """A file written into the workload survives snapshot -> remove -> restore elsewhere."""
    volumes = [VolumeSpec(name="state", mount_path="/state")] if with_volume else []
    spec = docker_spec("keeper", busybox, f"t{run_id}", volumes=volumes)
    await docker_rt.prepare(spec)
    await docker_rt.create(spec)
    await docker_rt.start(key(spec))
    await docker_rt.put_file(key(spec), "/state/sub/counter.txt", b"41\n")
    await docker_rt.stop(key(spec), timeout=1)
    blob = await docker_rt.snapshot(key(spec))
    await docker_rt.remove(key(spec))

    moved = spec.model_copy(
        update={"name": "keeper-moved", "replica": 1, "command": ["cat", "/state/sub/counter.txt"]}
    )
    restored = await docker_rt.restore(moved, blob)
    assert restored.state is InstanceState.CREATED
    await docker_rt.start(key(moved))
    await eventually(
        lambda: state_is(docker_rt, key(moved), InstanceState.EXITED), what="cat exits"
    )
    assert (await docker_rt.status(key(moved))).exit_code == 0
    assert await docker_rt.logs(key(moved)) == ["41"]
    await docker_rt.remove(key(moved))


async def test_remove_keep_state_keeps_volume_for_successor(
    docker_rt: DockerRuntime, busybox: str, run_id: str
) -> None:
    """A spec change replaces the container; remove(keep_state=True) keeps its volume."""
    spec = docker_spec(
        "db", busybox, f"t{run_id}", volumes=[VolumeSpec(name="data", mount_path="/data")]
    )
    await docker_rt.prepare(spec)
    await docker_rt.create(spec)
    await docker_rt.put_file(key(spec), "/data/kept.txt", b"kept")  # container not started
    await docker_rt.remove(key(spec), keep_state=True)
    assert f"fm-n-{run_id}-t{run_id}-app-db-0-data" in docker_names(
        "volume", "ls", "--format", "{{.Name}}"
    )
    changed = spec.model_copy(update={"command": ["cat", "/data/kept.txt"]})
    await docker_rt.create(changed)
    await docker_rt.start(key(changed))
    await eventually(
        lambda: state_is(docker_rt, key(changed), InstanceState.EXITED), what="cat exits"
    )
    assert await docker_rt.logs(key(changed)) == ["kept"]
    await docker_rt.remove(key(changed))
    assert f"fm-n-{run_id}-t{run_id}-app-db-0-data" not in docker_names(
        "volume", "ls", "--format", "{{.Name}}"
    )
