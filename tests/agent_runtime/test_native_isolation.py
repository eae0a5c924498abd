"""Native workloads cannot escape: per-tenant users, private directories, limits that hold.

These tests need root (the agent runs as root on a node, and so do these tests here): the
runtime makes the tenants' system accounts ``fm-t-iso-a`` and ``fm-t-iso-b`` (fixed names, so
repeated runs reuse them instead of adding accounts).
"""

from __future__ import annotations

import io
import json
import os
import pwd
import stat
import sys
import tarfile
from pathlib import Path

import psutil
import pytest

from fogmesh.agent.runtime import (
    InstanceState,
    NativeIsolation,
    NativeRuntime,
    PrepareFailed,
)
from fogmesh.agent.runtime.native_cgroup import CgroupParent, cgroup_fs_type
from fogmesh.agent.runtime.native_isolation import account_name
from fogmesh.agent.runtime.native_state import Layout
from fogmesh.protocol.workload import Artefact, RestartPolicy, RuntimeKind, WorkloadSpec
from tests.agent_runtime.helpers import eventually, key

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="per-tenant users need root")

TENANT_A, TENANT_B = "iso-a", "iso-b"

# Each probe prints "<what> leaked" or "<what> denied"; the test wants every one denied.
PROBES = """
echo "uid $(id -u) gid $(id -g) groups $(id -G)"
try() {
    what=$1; shift
    if "$@" >/dev/null 2>&1; then echo "$what leaked"; else echo "$what denied"; fi
}
try shadow head -1 /etc/shadow
try agent-state cat "$AGENT_STATE/desired.json"
try agent-list ls "$AGENT_STATE"
try native-list ls "$NATIVE_DIR"
try other-tenant cat "$OTHER_WORK/secret.txt"
try other-tenant-list ls "$OTHER_WORK"
try own-record cat ../run/shim.json
try write-instance touch ../planted
try write-native touch "$NATIVE_DIR/planted"
try write-etc touch /etc/fogmesh-planted
try sudo-like su -c true root
if touch own-file; then echo "own-work writable"; fi
exec sleep 300
"""


def spec(tenant: str, name: str, command: list[str], **extra: object) -> WorkloadSpec:
    """A native ``/bin/sh`` spec of app ``app`` for ``tenant``."""
    return WorkloadSpec.model_validate(
        {
            "name": name,
            "tenant": tenant,
            "app": "app",
            "component": "comp",
            "runtime": RuntimeKind.NATIVE,
            "executable": "/bin/sh",
            "command": command,
            **extra,
        }
    )


async def run(rt: NativeRuntime, workload: WorkloadSpec) -> None:
    await rt.prepare(workload)
    await rt.create(workload)
    await rt.start(key(workload))


async def test_workload_runs_unprivileged_and_reaches_nothing_of_others(
    native_rt: NativeRuntime, tmp_path: Path
) -> None:
    """The reported fault: a tenant's ``/bin/sh`` ran as uid 0 and read /etc/shadow. Now it runs
    as its tenant's user and cannot read the agent's state, another tenant's files, or write
    outside its own work directory."""
    agent_state = native_rt.state_dir.parent
    (agent_state / "desired.json").write_text('{"secret": 1}')
    (agent_state / "desired.json").chmod(0o600)
    other = spec(TENANT_B, "app-comp-0", ["-c", "exec sleep 300"])
    await run(native_rt, other)
    await native_rt.put_file(key(other), "secret.txt", b"b's secret", 0o644)
    other_work = Layout.of(native_rt.state_dir, other.tenant, other.name).work

    probe = spec(
        TENANT_A,
        "app-comp-0",  # the same name as the other tenant's: they must not meet
        ["-c", PROBES],
        env={
            "AGENT_STATE": str(agent_state),
            "NATIVE_DIR": str(native_rt.state_dir),
            "OTHER_WORK": str(other_work),
        },
    )
    await run(native_rt, probe)

    async def probed() -> bool:
        return "own-work writable" in await native_rt.logs(key(probe), tail=50)

    await eventually(probed, what="probe script done")
    lines = await native_rt.logs(key(probe), tail=50)
    assert [line for line in lines if line.endswith("leaked")] == []
    assert sum(line.endswith("denied") for line in lines) == 11
    account = pwd.getpwnam(account_name(TENANT_A))
    assert account.pw_uid != 0
    assert lines[0] == f"uid {account.pw_uid} gid {account.pw_gid} groups {account.pw_gid}"

    status = await native_rt.status(key(probe))
    proc = psutil.Process(int(status.runtime_id))
    assert proc.uids().real == proc.uids().effective == proc.uids().saved == account.pw_uid
    assert proc.gids().real == proc.gids().effective == account.pw_gid
    assert not (Layout.of(native_rt.state_dir, probe.tenant, probe.name).root / "planted").exists()
    assert not (native_rt.state_dir / "planted").exists()

    # two tenants, one app name: two directories, two users
    mine = Layout.of(native_rt.state_dir, probe.tenant, probe.name)
    theirs = Layout.of(native_rt.state_dir, other.tenant, other.name)
    assert mine.root != theirs.root
    assert mine.work.stat().st_uid == account.pw_uid
    assert theirs.work.stat().st_uid == pwd.getpwnam(account_name(TENANT_B)).pw_uid
    assert stat.S_IMODE(mine.work.stat().st_mode) == 0o700
    assert stat.S_IMODE(mine.spec.stat().st_mode) == 0o600
    assert stat.S_IMODE(native_rt.state_dir.stat().st_mode) == 0o711
    listed = {s.name for s in await native_rt.list_instances()}
    assert listed == {f"{TENANT_A}/app-comp-0", f"{TENANT_B}/app-comp-0"}
    for workload in (probe, other):
        await native_rt.remove(key(workload))


async def test_memory_limit_holds(native_rt: NativeRuntime) -> None:
    """A process allocating past its memory limit is refused (RLIMIT_AS) or killed (cgroup);
    the same program within the limit runs to its end."""
    alloc = "import sys; b = bytearray(int(sys.argv[1]) << 20); print('allocated', len(b))"
    limit = 96 << 20
    greedy = WorkloadSpec(
        name="greedy",
        tenant=TENANT_A,
        app="app",
        component="greedy",
        runtime=RuntimeKind.NATIVE,
        executable=sys.executable,
        command=["-c", alloc, "512"],
        memory_limit_bytes=limit,
        restart_policy=RestartPolicy.NEVER,
    )
    modest = greedy.model_copy(update={"name": "modest", "command": ["-c", alloc, "4"]})
    for workload in (greedy, modest):
        await run(native_rt, workload)

    async def both_exited() -> bool:
        states = [(await native_rt.status(key(w))).state for w in (greedy, modest)]
        return all(s is InstanceState.EXITED for s in states)

    await eventually(both_exited, what="both programs end")
    assert (await native_rt.status(key(modest))).exit_code == 0
    assert (await native_rt.status(key(greedy))).exit_code != 0
    greedy_log = await native_rt.logs(key(greedy))
    assert not any(line.startswith("allocated") for line in greedy_log)
    if native_rt.access.cgroups is None:  # no cgroup v2 here: the address-space limit refused it
        assert any("MemoryError" in line for line in greedy_log)


async def test_refused_native_workloads(native_dir: Path) -> None:
    """``refuse`` turns every native workload away at prepare, with the reason."""
    rt = NativeRuntime(native_dir, "n-refuse", isolation=NativeIsolation.REFUSE)
    with pytest.raises(PrepareFailed, match="refused"):
        await rt.prepare(spec(TENANT_A, "app-comp-0", ["-c", "true"]))
    assert await rt.list_instances() == []


async def test_agent_user_isolation_runs_as_the_agent(native_dir: Path) -> None:
    """``agent-user`` (a trusted node) keeps the old behaviour: the agent's own user."""
    rt = NativeRuntime(native_dir, "n-agent-user", isolation=NativeIsolation.AGENT_USER)
    workload = spec(TENANT_A, "app-comp-0", ["-c", "id -u; exec sleep 300"])
    await run(rt, workload)

    async def printed() -> bool:
        return bool(await rt.logs(key(workload)))

    await eventually(printed, what="uid printed")
    assert await rt.logs(key(workload)) == [str(os.geteuid())]
    await rt.remove(key(workload))


def test_cgroup_parent_only_on_a_writable_v2_hierarchy(tmp_path: Path) -> None:
    """Where /sys/fs/cgroup is not cgroup v2 (this machine: a v1 / hybrid layout), no cgroup is
    used; a parent outside the hierarchy is refused everywhere."""
    assert CgroupParent.open(tmp_path / "elsewhere") is None
    if cgroup_fs_type() != "cgroup2":
        assert CgroupParent.open(Path("/sys/fs/cgroup/fogmesh-test")) is None


def test_account_names_are_distinct_and_valid() -> None:
    """Account names stay within useradd's rules and never merge two tenants."""
    assert account_name("acme") == "fm-t-acme"
    odd = ["Acme", "acme.eu", "a" * 40, "a" * 41, "ü-tenant"]
    names = {account_name(t) for t in odd}
    assert len(names) == len(odd)
    for name in names:
        assert len(name) <= 32
        assert name.startswith("fm-t-")
        assert all(c.islower() or c.isdigit() or c in "_-" for c in name)


async def test_flat_layout_of_older_agents_is_listed_for_removal(native_rt: NativeRuntime) -> None:
    """An instance an older agent left at ``state_dir/{name}`` (run as root) is listed under a
    key no desired workload has, so the reconciler removes it and starts the workload isolated."""
    workload = spec(TENANT_A, "old-0", ["-c", "exec sleep 300"])
    await native_rt.prepare(workload)
    await native_rt.create(workload)
    Layout.of(native_rt.state_dir, workload.tenant, workload.name).root.rename(
        native_rt.state_dir / "old-0"
    )
    listed = await native_rt.list_instances()
    assert [(s.name, s.state) for s in listed] == [("/old-0", InstanceState.CREATED)]
    await native_rt.remove("/old-0")
    assert await native_rt.list_instances() == []
    assert not (native_rt.state_dir / "old-0").exists()


async def test_file_artefact_must_be_readable_by_every_user(
    native_rt: NativeRuntime, tmp_path: Path
) -> None:
    """The agent reads file:// artefacts as root: a tenant may not name a tar only root reads."""
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    tar = private / "app.tar"
    with tarfile.open(tar, "w") as out:
        body = b"exec sleep 300\n"
        info = tarfile.TarInfo("run.sh")
        info.size = len(body)
        out.addfile(info, io.BytesIO(body))
    workload = WorkloadSpec(
        name="art-0",
        tenant=TENANT_A,
        app="app",
        component="art",
        runtime=RuntimeKind.NATIVE,
        artefact=Artefact(url=f"file://{tar}"),
    )
    with pytest.raises(PrepareFailed, match="not readable by every user"):
        await native_rt.prepare(workload)
    private.chmod(0o755)
    await native_rt.prepare(workload)


async def test_cgroup_leaf_gets_the_limits_and_the_workload(
    native_rt: NativeRuntime, tmp_path: Path
) -> None:
    """What the agent writes into an instance's cgroup, and that the shim joins it before exec.

    This machine has no writable cgroup v2 hierarchy, so a plain directory stands in for the
    parent: the files are checked, the kernel's enforcement of them cannot run here.
    """
    native_rt.access.open()
    native_rt.access.cgroups = CgroupParent(tmp_path / "cgroup")
    (tmp_path / "cgroup").mkdir()
    workload = spec(
        TENANT_A, "cg-0", ["-c", "exec sleep 300"], cpu_limit=0.5, memory_limit_bytes=64 << 20
    )
    await run(native_rt, workload)
    (leaf,) = (tmp_path / "cgroup").iterdir()
    assert (leaf / "memory.max").read_text() == f"{64 << 20}\n"
    assert (leaf / "memory.swap.max").read_text() == "0\n"
    assert (leaf / "cpu.max").read_text() == "50000 100000\n"
    assert (leaf / "cgroup.procs").read_text() == "0\n"  # written by the workload's process
    config = json.loads(
        Layout.of(native_rt.state_dir, workload.tenant, workload.name).shim_config.read_text()
    )
    assert config["cgroup"] == str(leaf)
    assert config["rlimit_as"] is None  # the cgroup bounds memory instead
    await native_rt.remove(key(workload))
