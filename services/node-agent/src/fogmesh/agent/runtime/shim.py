"""The native runtime's shim: runs one app, pumps its output into rotating logs, records it.

Started by :class:`~fogmesh.agent.runtime.native.NativeRuntime` as
``python -I -S shim.py CONFIG.json`` (by file path and without ``site``: it imports only the
standard library, so it starts in a fraction of the time the venv's site-packages and psutil
took on a loaded node, and a start waits for it). It forks once and the parent exits at once:
the shim then lives on independently of the agent (re-parented, its own session), so
workloads survive an agent restart.

The shim starts the app in a new session / process group (pgid = pid) with the configured
rlimit and niceness, in its cgroup (when given), with ``no_new_privs`` set, and as the
configured unprivileged user: between fork and exec it drops every supplementary group, then
its group, then its user (``setgroups([])``, ``setgid``, ``setuid``), so the app never holds
the agent's privileges even for an instant. The shim itself keeps them (it writes the logs and
records in directories the app cannot touch). It writes ``instance.json`` (pid, create time,
start time), copies the app's merged stdout+stderr line by line, each prefixed with a unix
timestamp, into ``log_path`` rotated at ``max_bytes`` with ``backups`` old files (``.1``
newest), and writes ``exit.json`` (exit code, 128 + signal when killed, the time of the exit)
once the app has exited, what it left running is killed (its process group and, with a
cgroup, everything in it: :func:`end_what_it_left`) and its last output is in the log: at the
pipe's end, or :data:`LOG_DRAIN_S` after the exit if a process that left the app's group (and
has no cgroup to end it) holds the pipe open. Whoever sees the exit can read the app's last
words.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, BinaryIO

MAX_LINE = 16 * 1024
LOG_DRAIN_S = 2.0
"""How long the exit's record waits, after the app exited, for its output to reach the log."""
_PR_SET_NO_NEW_PRIVS = 38
_LIBC = ctypes.CDLL(None, use_errno=True)  # loaded before any fork, never in the child


def write_json(path: Path, value: dict[str, Any]) -> None:
    """Write ``value`` to ``path`` atomically."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(value))
    tmp.replace(path)


class Rotator:
    """An append-only log file of at most ``max_bytes``, with ``backups`` rotated copies."""

    def __init__(self, path: Path, max_bytes: int, backups: int) -> None:
        self.path, self.max_bytes, self.backups = path, max_bytes, backups
        self.file: BinaryIO = path.open("ab")
        self.size = self.file.tell()

    def write(self, record: bytes) -> None:
        """Append one record, rotating first if it would not fit."""
        if self.size and self.size + len(record) > self.max_bytes:
            self.rotate()
        self.file.write(record)
        self.file.flush()
        self.size += len(record)

    def rotate(self) -> None:
        """``log`` -> ``log.1`` -> ... -> ``log.{backups}`` (the oldest is dropped)."""
        self.file.close()
        for index in range(self.backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{index}")
            if older.exists():
                older.replace(self.path.with_name(f"{self.path.name}.{index + 1}"))
        if self.backups > 0:
            self.path.replace(self.path.with_name(f"{self.path.name}.1"))
        else:
            self.path.unlink(missing_ok=True)
        self.file = self.path.open("ab")
        self.size = 0


def pump(fd: int, log: Rotator) -> None:
    """Copy lines from ``fd`` to ``log`` until EOF (long lines are split at MAX_LINE)."""
    pending = b""
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        pending += chunk
        while True:
            cut = pending.find(b"\n")
            if 0 <= cut < MAX_LINE:
                line, pending = pending[:cut], pending[cut + 1 :]
            elif len(pending) >= MAX_LINE:
                line, pending = pending[:MAX_LINE], pending[MAX_LINE:]
            else:
                break
            log.write(b"%.6f %s\n" % (time.time(), line))
    if pending:
        log.write(b"%.6f %s\n" % (time.time(), pending))
    os.close(fd)


def confine(config: dict[str, Any]) -> None:
    """In the app's process, before exec: default signals, the cgroup, limits, no new
    privileges, then the unprivileged user (groups first: after setuid they cannot change)."""
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    if config.get("cgroup"):
        Path(config["cgroup"], "cgroup.procs").write_text("0\n")  # "0" moves the writer
    rlimit_as, niceness = config.get("rlimit_as"), int(config.get("nice") or 0)
    if rlimit_as:
        resource.setrlimit(resource.RLIMIT_AS, (int(rlimit_as), int(rlimit_as)))
    if niceness:
        os.nice(niceness)
    os.umask(0o077)
    # setuid / setgid programs (su, sudo, passwd) cannot raise the app's privileges again
    if _LIBC.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
    uid, gid = config.get("uid"), config.get("gid")
    if uid is not None:
        os.setgroups([])
        os.setgid(int(gid if gid is not None else uid))
        os.setuid(int(uid))
        if os.getuid() != int(uid) or os.geteuid() != int(uid) or os.getgroups():
            raise OSError("could not drop privileges")


def discard(fd: int) -> None:
    """Read ``fd`` to its end, keeping nothing, then close it (if :func:`pump` has not)."""
    with contextlib.suppress(OSError):
        while os.read(fd, 65536):
            pass
    with contextlib.suppress(OSError):
        os.close(fd)


def end_what_it_left(pgid: int, cgroup: str | None) -> None:
    """Kill what the app left running when it exited, as systemd does with a service's and
    Docker with a container's: its process group (its session's, ``pgid`` = its pid, reserved
    while a member lives) and, with a cgroup, everything in it (``cgroup.kill``, Linux 5.14)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
    if cgroup:
        with contextlib.suppress(OSError):  # an older kernel: the process group only
            Path(cgroup, "cgroup.kill").write_text("1\n")


def process_create_time(pid: int) -> float:
    """The create time of ``pid`` as psutil gives it on Linux (boot time + the start ticks of
    ``/proc/{pid}/stat``), which the agent compares with psutil's own."""
    with open(f"/proc/{pid}/stat", "rb") as fh:  # noqa: PTH123
        data = fh.read()
    ticks = int(data[data.rfind(b")") + 2 :].split()[19])  # field 22: starttime
    with open("/proc/stat", "rb") as fh:  # noqa: PTH123
        boot = next(float(line.split()[1]) for line in fh if line.startswith(b"btime"))
    return ticks / os.sysconf("SC_CLK_TCK") + boot


def run(config: dict[str, Any]) -> None:
    """Start the app described by ``config``, record it, pump its output, record its exit."""
    record_path, exit_path = Path(config["record_path"]), Path(config["exit_path"])

    def limits() -> None:
        confine(config)

    read_fd, write_fd = os.pipe()
    try:
        proc = subprocess.Popen(
            config["argv"],
            cwd=config["cwd"],
            env=config["env"],
            stdin=subprocess.DEVNULL,
            stdout=write_fd,
            stderr=write_fd,
            start_new_session=True,
            preexec_fn=limits,  # noqa: PLW1509 (the shim has a single thread here)
        )
    except (OSError, subprocess.SubprocessError) as exc:
        write_json(exit_path, {"exit_code": 127, "finished_at": time.time(), "error": str(exc)})
        return
    os.close(write_fd)
    try:
        create_time = process_create_time(proc.pid)
    except (OSError, ValueError, IndexError):
        create_time = 0.0
    try:
        shim_created = process_create_time(os.getpid())
    except (OSError, ValueError, IndexError):
        shim_created = 0.0
    started = time.time()
    write_json(
        record_path,
        {
            "pid": proc.pid,
            "create_time": create_time,
            "started_at": started,
            "shim": os.getpid(),
            "shim_create_time": shim_created,
        },
    )

    pumped = threading.Event()

    def wait() -> None:
        code = proc.wait()
        finished = time.time()
        end_what_it_left(proc.pid, config.get("cgroup"))
        # the exit is recorded once the output the app left in the pipe is in the log (EOF),
        # or after LOG_DRAIN_S if something the app started still holds the pipe open
        pumped.wait(LOG_DRAIN_S)
        write_json(
            exit_path, {"exit_code": code if code >= 0 else 128 - code, "finished_at": finished}
        )

    waiter = threading.Thread(target=wait, daemon=True)
    waiter.start()
    try:
        pump(read_fd, Rotator(Path(config["log_path"]), config["max_bytes"], config["backups"]))
    except OSError:
        discard(read_fd)  # the log cannot be written (a full disk): the app runs on, unblocked
    finally:
        pumped.set()
    waiter.join()


def main() -> None:
    """``python shim.py CONFIG.json``: detach, then :func:`run`."""
    config = json.loads(Path(sys.argv[1]).read_text())
    if os.fork() > 0:
        os._exit(0)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    run(config)


if __name__ == "__main__":
    main()
