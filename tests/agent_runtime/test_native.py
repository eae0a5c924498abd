"""The native runtime against real processes: executables, tar artefacts, logs, re-adoption."""

from __future__ import annotations

import hashlib
import http.server
import io
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from fogmesh.agent.runtime import (
    InstanceState,
    NativeRuntime,
    PrepareFailed,
    Runtime,
    UnsafePath,
)
from fogmesh.agent.runtime.native_state import Layout
from fogmesh.protocol.workload import Artefact, RuntimeKind, VolumeSpec, WorkloadSpec
from tests.agent_runtime.helpers import eventually, key

SLEEPER = ["-c", 'echo "started $FOGMESH_WORKLOAD $GREETING"; echo oops >&2; exec sleep 300']


def sh_spec(name: str, args: list[str], **extra: object) -> WorkloadSpec:
    """A native spec running ``/bin/sh args``."""
    return WorkloadSpec.model_validate(
        {
            "name": name,
            "tenant": "acme",
            "app": "app",
            "component": "comp",
            "runtime": RuntimeKind.NATIVE,
            "executable": "/bin/sh",
            "command": args,
            **extra,
        }
    )


async def running(rt: NativeRuntime, name: str) -> bool:
    return (await rt.status(name)).state is InstanceState.RUNNING


async def exited(rt: NativeRuntime, name: str) -> bool:
    return (await rt.status(name)).state is InstanceState.EXITED


def make_artefact(folder: Path) -> tuple[Path, str]:
    """A .tar with run.sh and data.txt; its path and sha256."""
    script = b'echo "artefact $1 $(cat data.txt)"\nexec sleep 300\n'
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, body in (("run.sh", script), ("data.txt", b"payload-42")):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(body), 0o755
            tar.addfile(info, io.BytesIO(body))
    path = folder / "app.tar"
    path.write_bytes(buf.getvalue())
    return path, hashlib.sha256(buf.getvalue()).hexdigest()


@pytest.fixture
def http_dir(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """An HTTP server on 127.0.0.1 serving a fresh folder."""
    folder = tmp_path / "www"
    folder.mkdir()

    def handler(*args: object) -> http.server.SimpleHTTPRequestHandler:
        return http.server.SimpleHTTPRequestHandler(*args, directory=str(folder))  # type: ignore[arg-type]

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", folder
    server.shutdown()
    server.server_close()


async def test_executable_lifecycle_env_logs_and_group_kill(native_rt: NativeRuntime) -> None:
    """An executable runs with its env, logs stdout+stderr, and stop kills its children too."""
    assert isinstance(native_rt, Runtime)
    spec = sh_spec(
        "sleeper",
        ["-c", 'echo "started $FOGMESH_WORKLOAD $GREETING"; echo oops >&2; sleep 300 & wait'],
        env={"GREETING": "hi"},
        memory_limit_bytes=512 << 20,
    )
    await native_rt.prepare(spec)
    assert (await native_rt.create(spec)).state is InstanceState.CREATED
    assert (await native_rt.create(spec)).state is InstanceState.CREATED  # idempotent
    status = await native_rt.start(key(spec))
    await eventually(lambda: running(native_rt, key(spec)), what="running")
    status = await native_rt.status(key(spec))
    pid = int(status.runtime_id)
    leader = psutil.Process(pid)
    assert leader.cwd() == str(Path(Layout.of(native_rt.state_dir, spec.tenant, spec.name).work))

    async def child_started() -> bool:
        return bool(leader.children())

    await eventually(child_started, what="child process")
    child = leader.children()[0]
    assert status.labels["fogmesh.workload"] == "sleeper"

    async def logged() -> bool:
        lines = await native_rt.logs(key(spec))
        return "started sleeper hi" in lines and "oops" in lines

    await eventually(logged, what="log lines")
    usage = await native_rt.usage(key(spec))
    assert usage.memory_bytes > 0
    stopped = await native_rt.stop(key(spec), timeout=10)
    assert stopped.state is InstanceState.EXITED
    assert stopped.exit_code == 128 + 15

    async def child_killed() -> bool:  # SIGKILL to the group is sent; the kernel ends it soon
        try:
            return not child.is_running() or child.status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    await eventually(child_killed, what="the child killed with its group")
    await native_rt.remove(key(spec))
    assert (await native_rt.status(key(spec))).state is InstanceState.ABSENT
    assert not Layout.of(native_rt.state_dir, spec.tenant, spec.name).root.exists()


async def test_tar_artefact_from_file_and_http(
    native_rt: NativeRuntime, tmp_path: Path, http_dir: tuple[str, Path]
) -> None:
    """A .tar + run.sh app fetched over file:// and http://, checksum verified."""
    path, digest = make_artefact(tmp_path)
    base_url, folder = http_dir
    (folder / "app.tar").write_bytes(path.read_bytes())
    for name, url in (("from-file", f"file://{path}"), ("from-http", f"{base_url}/app.tar")):
        spec = WorkloadSpec(
            name=name,
            tenant="acme",
            app="app",
            component=name,
            runtime=RuntimeKind.NATIVE,
            artefact=Artefact(url=url, sha256=digest),
            command=[name],
        )
        await native_rt.prepare(spec)
        await native_rt.create(spec)
        await native_rt.start(key(spec))

        async def logged(name: str = name) -> bool:
            return f"artefact {name} payload-42" in await native_rt.logs(f"acme/{name}")

        await eventually(logged, what=f"{name} output")
        await native_rt.remove(key(spec))
    bad = WorkloadSpec(
        name="bad",
        tenant="acme",
        app="app",
        component="bad",
        runtime=RuntimeKind.NATIVE,
        artefact=Artefact(url=f"file://{path}", sha256="0" * 64),
    )
    with pytest.raises(PrepareFailed, match="checksum"):
        await native_rt.prepare(bad)
    missing = sh_spec("nope", [], executable="/no/such/binary")
    with pytest.raises(PrepareFailed):
        await native_rt.prepare(missing)


async def test_logs_are_size_bounded(native_dir: Path, run_id: str) -> None:
    """A chatty app's logs rotate: the files stay under (backups + 1) * max_bytes."""
    rt = NativeRuntime(native_dir, f"n-{run_id}", log_max_bytes=4096, log_backups=2)
    line = "x" * 100
    spec = sh_spec(
        "chatty", ["-c", f"i=0; while [ $i -lt 2000 ]; do echo $i {line}; i=$((i+1)); done"]
    )
    await rt.prepare(spec)
    await rt.create(spec)
    await rt.start(key(spec))
    await eventually(lambda: exited(rt, key(spec)), what="chatty exit")

    async def last_line_logged() -> bool:
        lines = await rt.logs(key(spec), tail=3)
        return bool(lines) and lines[-1] == f"1999 {line}"

    await eventually(last_line_logged, what="last line in the log")
    files = Layout.of(native_dir, spec.tenant, spec.name).log_files()
    assert 2 <= len(files) <= 3
    assert sum(f.stat().st_size for f in files) <= 3 * 4096
    assert (await rt.status(key(spec))).exit_code == 0
    assert await rt.logs(key(spec), tail=3, since=4102444800.0) == []  # year 2100


async def test_restarted_agent_readopts_instead_of_duplicating(
    native_dir: Path, run_id: str
) -> None:
    """A new runtime object on the same state dir finds the running process and keeps it."""
    first = NativeRuntime(native_dir, f"n-{run_id}")
    spec = sh_spec("keeper", SLEEPER, env={"MARKER": run_id})
    await first.prepare(spec)
    await first.create(spec)
    await first.start(key(spec))
    await eventually(lambda: running(first, key(spec)), what="running")
    pid = (await first.status(key(spec))).runtime_id
    await first.close()

    second = NativeRuntime(native_dir, f"n-{run_id}")
    found = await second.list_instances()
    assert [(s.name, s.state, s.runtime_id) for s in found] == [
        ("acme/keeper", InstanceState.RUNNING, pid)
    ]
    assert (await second.start(key(spec))).runtime_id == pid  # no second process

    def marked() -> list[psutil.Process]:
        procs = []
        for proc in psutil.process_iter():
            try:
                if proc.environ().get("MARKER") == run_id:
                    procs.append(proc)
            except psutil.Error:
                continue
        return procs

    assert [p.pid for p in marked()] == [int(pid)]
    psutil.Process(int(pid)).kill()  # crash: the shim records 128 + SIGKILL
    await eventually(lambda: exited(second, key(spec)), what="crash seen")
    assert (await second.status(key(spec))).exit_code == 128 + 9
    restarted = await second.start(key(spec))
    assert restarted.state is InstanceState.RUNNING
    assert restarted.runtime_id != pid
    await second.remove(key(spec))
    assert marked() == []


async def test_put_file_refuses_escapes(native_rt: NativeRuntime, tmp_path: Path) -> None:
    """put_file writes inside the working dir only: no '..', no symlink out."""
    spec = sh_spec("files", SLEEPER)
    await native_rt.prepare(spec)
    await native_rt.create(spec)
    work = Layout.of(native_rt.state_dir, spec.tenant, spec.name).work
    await native_rt.put_file(key(spec), "conf/app.ini", b"a=1", 0o600)
    assert (work / "conf/app.ini").read_bytes() == b"a=1"
    assert (work / "conf/app.ini").stat().st_mode & 0o777 == 0o600
    await native_rt.put_file(key(spec), "/state/b.txt", b"b")  # "/" is the working dir
    assert (work / "state/b.txt").read_bytes() == b"b"
    outside = tmp_path / "outside"
    outside.mkdir()
    (work / "link").symlink_to(outside)
    for bad in ("../escape.txt", "/../../escape.txt", "state/../../x", "link/x.txt", ""):
        with pytest.raises(UnsafePath):
            await native_rt.put_file(key(spec), bad, b"no")
    assert list(outside.iterdir()) == []
    assert not (work.parent / "escape.txt").exists()


async def test_snapshot_restore_keeps_state(native_rt: NativeRuntime) -> None:
    """snapshot of state/ restored into a new instance keeps the file's content."""
    spec = sh_spec(
        "stateful",
        ["-c", 'echo "run $(date +%s)" >> state/history.txt; exec sleep 300'],
        volumes=[VolumeSpec(name="state", mount_path="/state")],
    )
    await native_rt.prepare(spec)
    await native_rt.create(spec)
    await native_rt.start(key(spec))
    await native_rt.put_file(key(spec), "state/nested/counter", b"41")

    async def history() -> bool:
        path = Layout.of(native_rt.state_dir, spec.tenant, spec.name).state / "history.txt"
        return path.exists() and path.read_text().startswith("run ")

    await eventually(history, what="state written by the app")
    await native_rt.stop(key(spec), timeout=5)
    blob = await native_rt.snapshot(key(spec))
    await native_rt.remove(key(spec))

    moved = spec.model_copy(update={"name": "stateful-moved", "replica": 1})
    restored = await native_rt.restore(moved, blob)
    assert restored.state is InstanceState.CREATED
    state = Layout.of(native_rt.state_dir, moved.tenant, moved.name).state
    assert (state / "nested/counter").read_bytes() == b"41"
    assert (state / "history.txt").read_text().startswith("run ")
    await native_rt.remove(key(moved))


async def test_remove_keep_state_keeps_state_for_successor(native_rt: NativeRuntime) -> None:
    """remove(keep_state=True) drops everything but work/state; a new spec of the name sees it."""
    spec = sh_spec("db", SLEEPER)
    await native_rt.prepare(spec)
    await native_rt.create(spec)
    await native_rt.put_file(key(spec), "state/kept.txt", b"kept")
    await native_rt.put_file(key(spec), "scratch.txt", b"gone")
    await native_rt.remove(key(spec), keep_state=True)
    assert (await native_rt.status(key(spec))).state is InstanceState.ABSENT
    changed = sh_spec("db", ["-c", "cat state/kept.txt; test ! -e scratch.txt"])
    await native_rt.create(changed)
    await native_rt.start(key(changed))
    await eventually(lambda: exited(native_rt, key(changed)), what="successor exits")
    assert (await native_rt.status(key(changed))).exit_code == 0
    assert await native_rt.logs(key(changed)) == ["kept"]
    await native_rt.remove(key(changed))
