"""Helpers for end-to-end tests that run ``fogmesh up`` as a user would."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shlex
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Any

import aiomqtt
import psutil
import yaml

from tests.support.buses import eventually

__all__ = [
    "FOGMESH",
    "NODES",
    "OUT",
    "OutputReader",
    "Outputs",
    "UpFleet",
    "fleet_cli",
    "fleet_client",
    "fleet_id",
    "fleet_ok",
    "fogmesh_up",
    "leftovers",
    "read_env",
    "trusting",
    "wait_for_file",
]

FOGMESH = str(Path(sys.executable).parent / "fogmesh")
NODES = ["edge-1", "edge-2", "edge-3"]
"""The nodes of a three-node ``fogmesh up`` fleet."""
OUT = "fm/v1/data/demo/sensor-app/out"
"""The sample app's output topic."""


class OutputReader:
    """Collects a process's combined output in a thread, so the pipe never fills."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        assert proc.stdout is not None
        self._stdout = proc.stdout
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for line in self._stdout:
            self.lines.append(line.rstrip("\n"))

    def text(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, needle: str, timeout: float, proc: subprocess.Popen[str]) -> None:
        """Wait for ``needle`` in the output; ``proc`` must live meanwhile."""
        self.wait_match(re.escape(needle), timeout, proc)

    def wait_match(
        self, pattern: str, timeout: float, proc: subprocess.Popen[str]
    ) -> re.Match[str]:
        """Wait for output matching ``pattern``; ``proc`` must live meanwhile."""
        deadline = time.monotonic() + timeout
        while (found := re.search(pattern, self.text())) is None:
            if proc.poll() is not None:
                time.sleep(0.5)
                raise AssertionError(f"process exited ({proc.returncode}):\n{self.text()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {pattern!r} after {timeout}s:\n{self.text()}")
            time.sleep(0.2)
        return found


class UpFleet:
    """``fogmesh up ARGS --state-dir STATE --no-live`` as a user runs it (lines 250 wide, so the
    placements stay on one line), its output read in a thread; background tasks it carries
    (subscribers) end with it. :func:`fogmesh_up` closes it after a block; a test without an
    event loop calls :meth:`end`."""

    def __init__(self, state: Path, *args: str) -> None:
        self.state = state
        self.proc = subprocess.Popen(
            [FOGMESH, "up", *args, "--state-dir", str(state), "--no-live"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "COLUMNS": "250"},
        )  # fmt: skip
        self.out = OutputReader(self.proc)
        self.tasks: list[asyncio.Task[None]] = []

    def text(self) -> str:
        return self.out.text()

    def wait_for(self, needle: str, timeout: float = 180) -> None:
        self.out.wait_for(needle, timeout, self.proc)

    def wait_match(self, pattern: str, timeout: float = 180) -> re.Match[str]:
        return self.out.wait_match(pattern, timeout, self.proc)

    def deployed(self) -> dict[str, str]:
        """Wait for the sample app's deployment (every node is online by then); the fleet's
        ``fleet.env``."""
        self.wait_for("deployed sensor-app", 180)
        wait_for_file(self.state / "fleet.env", 10)
        return read_env(self.state / "fleet.env")

    def background(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` until the fleet is closed."""
        self.tasks.append(asyncio.create_task(coro))

    async def ctrl_c(self, timeout: float = 120, *, alive: bool = True) -> None:
        """Ctrl-C (the fleet still running, with ``alive``); it must end cleanly."""
        if alive:
            assert self.proc.poll() is None, self.text()
        self.proc.send_signal(signal.SIGINT)
        assert await asyncio.to_thread(self.proc.wait, timeout) == 0, self.text()

    async def close(self) -> None:
        """End the background tasks, then the fleet if a failure left it running: Ctrl-C
        first, so its children go with it, then SIGKILL."""
        for task in self.tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await task
        self.end()

    def end(self) -> None:
        """Ctrl-C a fleet still running, SIGKILL one that does not end in 60 s."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@contextlib.asynccontextmanager
async def fogmesh_up(state: Path, *args: str) -> AsyncIterator[UpFleet]:
    """``fogmesh up ARGS --state-dir STATE --no-live`` for the block, closed after it."""
    fleet = UpFleet(state, *args)
    try:
        yield fleet
    finally:
        await fleet.close()


def trusting(ca_file: str | None) -> ssl.SSLContext:
    """A client context that trusts ``ca_file``, or only the system's CAs without one."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if ca_file is not None:
        ctx.load_verify_locations(cafile=ca_file)
    return ctx


def fleet_client(
    env: dict[str, str], identifier: str, port: int | None = None, **options: Any
) -> aiomqtt.Client:
    """A client of the fleet's cloud broker (``port``, or ``FOGMESH_PORT``) with ``fleet.env``'s
    account; ``options`` go to :class:`aiomqtt.Client` (``tls_context``, ``timeout``)."""
    return aiomqtt.Client(
        "127.0.0.1",
        port if port is not None else int(env["FOGMESH_PORT"]),
        username=env["FOGMESH_USERNAME"],
        password=env["FOGMESH_PASSWORD"],
        identifier=identifier,
        **options,
    )


class Outputs:
    """Counts the sample app's ``out`` messages, as a user's subscriber would see them: on
    the cloud's plain listener, or on its TLS one trusting the fleet's CA (``tls``)."""

    def __init__(self, identifier: str, *, tls: bool = False) -> None:
        self.identifier = identifier
        self.tls = tls
        self.count = 0

    def _client(self, env: dict[str, str]) -> aiomqtt.Client:
        if not self.tls:
            return fleet_client(env, self.identifier)
        ca = trusting(env["FOGMESH_BROKER_CA_FILE"])
        port = int(env["FOGMESH_TLS_PORT"])
        return fleet_client(env, self.identifier, port, tls_context=ca, timeout=20)

    async def follow(self, env: dict[str, str]) -> None:
        async with self._client(env) as client:
            await client.subscribe(OUT, qos=1)
            async for _message in client.messages:
                self.count += 1

    async def more(self, than: int, what: str) -> None:
        """Wait until a few more outputs than ``than`` have arrived."""
        await eventually(lambda: self.count >= than + 3, timeout=90, what=what)


def fleet_cli(
    env: dict[str, str], *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``fogmesh ARGS`` with ``fleet.env``'s settings."""
    return subprocess.run(
        [FOGMESH, *args],
        capture_output=True, text=True, timeout=timeout, check=False, env={**os.environ, **env},
    )  # fmt: skip


def fleet_ok(env: dict[str, str], *args: str, timeout: float = 120) -> str:
    """``fogmesh ARGS`` with ``fleet.env``'s settings, which must succeed; its output."""
    done = fleet_cli(env, *args, timeout=timeout)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def wait_for_file(path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} did not appear in {timeout}s")
        time.sleep(0.2)


def read_env(path: Path) -> dict[str, str]:
    """The ``export K=V`` lines of a fleet.env file."""
    env: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.startswith("export "):
            key, _, value = line[len("export ") :].partition("=")
            env[key] = shlex.split(value)[0] if value else ""
    return env


def fleet_id(state_dir: Path) -> str | None:
    """The id ``fogmesh up`` marks its fleet's containers with (label ``fogmesh.fleet``), from
    an agent's configuration in its state directory (None: no agent was configured)."""
    for path in sorted(state_dir.glob("agent-*.yaml")):
        labels = (yaml.safe_load(path.read_text()) or {}).get("extra_labels") or {}
        if "fogmesh.fleet" in labels:
            return str(labels["fogmesh.fleet"])
    return None


def leftovers(state_dir: Path, nodes: list[str]) -> list[str]:
    """fogmesh processes or containers of a fleet that are still there (its containers by
    the fleet's label: another test's node may have the same name)."""
    root = str(state_dir.resolve())
    found = []
    for proc in psutil.process_iter(["pid", "cwd", "cmdline"]):
        try:
            cmdline = " ".join(proc.info.get("cmdline") or [])
            cwd = proc.info.get("cwd") or ""
        except psutil.Error:
            continue
        if (root in cmdline and "pytest" not in cmdline) or cwd.startswith(root):
            found.append(f"process {proc.pid}: {cmdline[:120]}")
    fleet = fleet_id(state_dir)
    for node in nodes if fleet is not None else []:
        listed = subprocess.run(
            ["docker", "ps", "-aq", "--filter", f"label=fogmesh.fleet={fleet}",
             "--filter", f"label=fogmesh.node={node}"],
            capture_output=True,
            text=True,
            check=False,
        )  # fmt: skip
        found += [f"container {cid} of {node}" for cid in listed.stdout.split()]
    return found
