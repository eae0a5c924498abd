"""The native runtime's end of a run: the exit is recorded once the app's last output is in
its log (and when the log cannot be written), what the app left running ends with it, and a
restart waits for the old run's shim (docs/agent.md, "Isolation")."""

from __future__ import annotations

import asyncio

import psutil

from fogmesh.agent.runtime import InstanceState, InstanceStatus, NativeRuntime
from fogmesh.agent.runtime.native_state import Layout, shim_alive
from tests.agent_runtime.helpers import eventually, key
from tests.agent_runtime.test_native import exited, sh_spec


async def test_an_exit_is_reported_once_the_apps_last_words_are_in_its_log(
    native_rt: NativeRuntime,
) -> None:
    """The moment the status says EXITED, the log holds everything the app wrote (the last
    lines of a crash are what its operator reads): the shim records the exit once its copy of
    the output has reached the end of it."""
    spec = sh_spec(
        "chatty",
        ["-c", "yes '' | head -n 60000; echo last words >&2; exit 3"],
    )
    await native_rt.prepare(spec)
    await native_rt.create(spec)
    await native_rt.start(key(spec))
    while (status := await native_rt.status(key(spec))).state is not InstanceState.EXITED:
        await asyncio.sleep(0)  # the first status that says so: no grace for the log
    assert status.exit_code == 3
    assert await native_rt.logs(key(spec), tail=1) == ["last words"]
    await native_rt.remove(key(spec))


async def test_what_an_app_left_running_ends_with_it(native_rt: NativeRuntime) -> None:
    """A process the app started and left running (holding its output) is killed when the app
    exits, as Docker ends a container's and systemd a service's; the exit is then reported."""
    spec = sh_spec("leaver", ["-c", "sleep 300 & echo $! > left.pid; echo left; exit 4"])
    await native_rt.prepare(spec)
    await native_rt.create(spec)
    await native_rt.start(key(spec))
    await eventually(lambda: exited(native_rt, key(spec)), what="the app's exit", timeout=30)
    assert (await native_rt.status(key(spec))).exit_code == 4
    assert await native_rt.logs(key(spec)) == ["left"]
    left = int(await native_rt.get_file(key(spec), "left.pid", 64))

    async def gone() -> bool:
        try:
            return bool(psutil.Process(left).status() == psutil.STATUS_ZOMBIE)
        except psutil.NoSuchProcess:
            return True

    await eventually(gone, what="the process the app left", timeout=30)
    await native_rt.remove(key(spec))


async def test_a_restart_waits_for_the_old_runs_exit_record(native_rt: NativeRuntime) -> None:
    """While the shim of a run that ended still records its exit (here: a process the app
    left in a session of its own holds the output), the instance is running, not exited
    without a code: a restart then cannot start a second copy, nor get the old run's exit."""
    spec = sh_spec(
        "rerun",
        [
            "-c",
            "if [ -e ran ]; then echo second; exec sleep 300; fi;"
            " touch ran; setsid sleep 20 & sleep 0.3; exit 1",
        ],
    )
    await native_rt.prepare(spec)
    await native_rt.create(spec)
    await native_rt.start(key(spec))

    async def listed() -> InstanceStatus:
        [one] = [s for s in await native_rt.list_instances() if s.name == key(spec)]
        return one

    while (first := await listed()).state is not InstanceState.EXITED:
        await asyncio.sleep(0.02)  # as the reconciler reads it, at every pass
    assert first.exit_code == 1
    second = await native_rt.start(key(spec))
    assert second.state is InstanceState.RUNNING
    await asyncio.sleep(2.5)  # past the old shim's longest wait for the app's output
    again = await listed()
    assert (again.state, again.runtime_id) == (InstanceState.RUNNING, second.runtime_id)
    await native_rt.remove(key(spec))


def test_a_shim_pid_taken_by_a_newer_process_is_not_the_shim() -> None:
    """A record's shim is alive only while its pid is that shim's: the create time it holds,
    or (a record of an older shim) a process created before the app started."""
    me = psutil.Process()
    created = me.create_time()
    assert shim_alive({"shim": me.pid, "shim_create_time": created, "started_at": created})
    assert not shim_alive({"shim": me.pid, "shim_create_time": created - 60})
    assert shim_alive({"shim": me.pid, "started_at": created + 1})
    assert not shim_alive({"shim": me.pid, "started_at": created - 3600})  # after a reboot


async def test_an_exit_is_recorded_when_the_log_cannot_be_written(
    native_rt: NativeRuntime,
) -> None:
    """A shim that cannot write the log (its file cannot be opened: here the log's place is
    a directory) still reads the app's output to its end, so the app is not blocked on a full
    pipe, and records its exit."""
    spec = sh_spec("unlogged", ["-c", "yes '' | head -n 100000; exit 5"])
    await native_rt.prepare(spec)
    await native_rt.create(spec)
    log = Layout.of(native_rt.state_dir, spec.tenant, spec.name).log
    log.unlink(missing_ok=True)
    log.mkdir(parents=True)
    await native_rt.start(key(spec))
    await eventually(lambda: exited(native_rt, key(spec)), what="the app's exit", timeout=30)
    assert (await native_rt.status(key(spec))).exit_code == 5
    await native_rt.remove(key(spec))
