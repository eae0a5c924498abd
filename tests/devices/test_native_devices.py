"""Native assignment: a workload given a device (a ``mknod`` character device, root's, 0600)
reads it as its tenant's own user; another tenant's workload, and the same tenant's once its
last holder is removed, cannot.

Root is needed (the runtime makes the tenants' accounts ``fm-t-dev-a`` / ``fm-t-dev-b``,
fixed names so repeated runs reuse them)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from fogmesh.agent.devices import DeviceCatalog
from fogmesh.agent.runtime import NativeIsolation, NativeRuntime
from fogmesh.protocol.workload import RuntimeKind, WorkloadSpec
from tests.agent_runtime.helpers import eventually, key
from tests.devices.conftest import make_char_device

# the tenant accounts are fixed names, made by the first test that needs them: one worker
pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="per-tenant users need root"),
    pytest.mark.xdist_group("device-tenants"),
]

PROBE = (
    'if head -c 4 "$DEV" 2>/dev/null | od -An -tx1 | grep -q "00 00 00 00"; '
    'then echo "$(id -u) read"; else echo "$(id -u) denied"; fi; exec sleep 300'
)


def _spec(tenant: str, name: str, device: Path, devices: list[str]) -> WorkloadSpec:
    return WorkloadSpec(
        name=name,
        tenant=tenant,
        app="sense",
        component="probe",
        runtime=RuntimeKind.NATIVE,
        executable="/bin/sh",
        command=["-c", PROBE],
        env={"DEV": str(device)},
        devices=devices,
    )


async def _outcome(rt: NativeRuntime, spec: WorkloadSpec) -> str:
    await rt.prepare(spec)
    await rt.create(spec)
    await rt.start(key(spec))

    async def said() -> bool:
        return bool(await rt.logs(key(spec)))

    await eventually(said, what=f"{spec.tenant}/{spec.name}'s probe")
    return (await rt.logs(key(spec)))[-1].split()[-1]


async def test_only_the_workload_given_the_device_reads_it(
    native_dir: Path, device_root: Path, run_id: str
) -> None:
    """Tenant a's workload with ``serial:ttyACM0`` reads it; tenant b's cannot, nor a's own
    once the last of a's holders is removed; the node's owner, group and mode never change."""
    node = make_char_device(device_root / "dev/ttyACM0", mode=0o600)
    before = node.stat()
    rt = NativeRuntime(
        native_dir,
        f"n-{run_id}",
        isolation=NativeIsolation.TENANT_USER,
        devices=DeviceCatalog(root=device_root),
    )
    holder = _spec("dev-a", "holder", node, ["serial:ttyACM0"])
    assert await _outcome(rt, holder) == "read"
    assert await _outcome(rt, _spec("dev-b", "other", node, [])) == "denied"
    # access is the tenant user's: it lasts while any of the tenant's workloads holds it
    twin = _spec("dev-a", "twin", node, [str(node)])
    assert await _outcome(rt, twin) == "read"
    await rt.remove(key(holder))
    assert await _outcome(rt, _spec("dev-a", "during", node, [])) == "read"
    await rt.remove(key(twin))
    assert await _outcome(rt, _spec("dev-a", "after", node, [])) == "denied"
    after = node.stat()
    assert (after.st_uid, after.st_gid) == (before.st_uid, before.st_gid) == (0, 0)
    assert stat.S_IMODE(after.st_mode) & 0o007 == 0
