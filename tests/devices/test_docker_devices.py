"""Docker assignment: a container given a serial sensor (a pseudo-terminal pair the test
writes readings into) and a character device reads them; one not given them cannot open them."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from fogmesh.agent.devices import DeviceCatalog
from fogmesh.agent.runtime import DockerRuntime, InstanceState, RuntimeFailure
from fogmesh.protocol.workload import RuntimeKind, WorkloadSpec
from tests.agent_runtime.helpers import RUN_LABEL, docker_cleanup, eventually, key
from tests.devices.conftest import make_char_device

pytestmark = pytest.mark.docker

READER = (
    "if head -c 4 /dev/video0 | od -An -tx1 | grep -q '00 00 00 00'; then echo zeros-read; fi; "
    'while read line; do echo "got $line"; done < /dev/ttyUSB0'
)
PROBE = (
    "for d in /dev/ttyUSB0 /dev/video0; do "
    'if head -c 1 $d >/dev/null 2>&1; then echo "$d opened"; else echo "$d denied"; fi; done; '
    "exec sleep 300"
)


@pytest.fixture
async def device_rt(run_id: str, device_root: Path) -> AsyncIterator[DockerRuntime]:
    """A DockerRuntime whose device catalog scans the test's device root."""
    runtime = DockerRuntime(
        f"n-{run_id}", extra_labels={RUN_LABEL: run_id}, devices=DeviceCatalog(root=device_root)
    )
    try:
        yield runtime
    finally:
        await runtime.close()
        docker_cleanup(run_id)


def _spec(name: str, image: str, tenant: str, script: str, devices: list[str]) -> WorkloadSpec:
    return WorkloadSpec(
        name=name,
        tenant=tenant,
        app="sense",
        component=name,
        runtime=RuntimeKind.DOCKER,
        image=image,
        command=["sh", "-c", script],
        devices=devices,
    )


async def _run(rt: DockerRuntime, spec: WorkloadSpec) -> None:
    await rt.prepare(spec)
    await rt.create(spec)
    assert (await rt.start(key(spec))).state is InstanceState.RUNNING


async def test_container_reads_its_devices_and_others_cannot(
    device_rt: DockerRuntime, busybox: str, run_id: str, device_root: Path, serial_sensor: int
) -> None:
    """The reader, given ``serial:ttyUSB0`` and ``video:video0``, reads the zeros of the one
    and every reading written into the other; the probe, given neither, opens neither."""
    make_char_device(device_root / "dev/video0")  # 1:5, reads zeros
    tenant = f"t{run_id}"
    reader = _spec("reader", busybox, tenant, READER, ["serial:ttyUSB0", "video:video0"])
    probe = _spec("probe", busybox, tenant, PROBE, [])
    await _run(device_rt, reader)
    await _run(device_rt, probe)
    readings = [f"t={20 + i}.5" for i in range(3)]
    os.write(serial_sensor, "".join(f"{r}\n" for r in readings).encode())

    async def all_read() -> bool:
        lines = await device_rt.logs(key(reader))
        return "zeros-read" in lines and all(f"got {r}" in lines for r in readings)

    await eventually(all_read, what="the container reading its devices")

    async def probed() -> bool:
        return len(await device_rt.logs(key(probe))) >= 2

    await eventually(probed, what="the probe's two lines")
    assert await device_rt.logs(key(probe)) == ["/dev/ttyUSB0 denied", "/dev/video0 denied"]


async def test_unknown_device_is_refused(device_rt: DockerRuntime, busybox: str) -> None:
    """A spec naming a device the node does not have is refused at create, never mapped."""
    spec = _spec("disk", busybox, "tdisk", "sleep 300", ["/dev/sda"])
    await device_rt.prepare(spec)
    with pytest.raises(RuntimeFailure, match="no device"):
        await device_rt.create(spec)
