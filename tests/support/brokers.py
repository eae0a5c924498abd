"""Start real MQTT brokers (embedded amqtt, Mosquitto) as child processes on free ports."""

from __future__ import annotations

import contextlib
import itertools
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.processes import kill, terminate

__all__ = [
    "MOSQUITTO",
    "BrokerProcess",
    "Mosquitto",
    "free_port",
    "mesh_broker_command",
    "mosquitto_etc",
    "require_mosquitto",
    "wait_port",
    "wait_ready",
]

REPO = Path(__file__).resolve().parents[2]

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
"""The mosquitto binary (Debian's package puts it in /usr/sbin, off a user's PATH)."""


# Under pytest-xdist each worker (gwN) hands out ports from its own block below the kernel's
# ephemeral range (32768+), so no two workers, and no outgoing connection, can get the same
# port in the moment between this check and the child's bind; a serial run asks the kernel.
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
_BLOCK_BASE, _BLOCK_SIZE, _BLOCKS = 12000, 2000, 10
_next_port = itertools.count(random.randrange(_BLOCK_SIZE))


def _worker_block() -> int | None:
    """The first port of this xdist worker's block, or None outside xdist."""
    if not _WORKER.startswith("gw") or not _WORKER[2:].isdigit():
        return None
    return _BLOCK_BASE + (int(_WORKER[2:]) % _BLOCKS) * _BLOCK_SIZE


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (this worker's own, under
    xdist; each port once per block cycle, so a stopped broker's port is not handed out again
    while a test may restart it)."""
    block = _worker_block()
    if block is None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])
    for _ in range(_BLOCK_SIZE):
        port = block + next(_next_port) % _BLOCK_SIZE
        if _bindable(port):
            return port
    raise RuntimeError(f"no free port in {block}-{block + _BLOCK_SIZE - 1}")


def wait_port(port: int, timeout: float = 15.0, host: str = "127.0.0.1") -> None:
    """Block until something accepts TCP connections on ``port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s")


def mesh_broker_command(mesh: Path, broker: str, *args: str) -> list[str]:
    """``python -m fogmesh.broker run`` for ``broker`` of a mesh file, logging at INFO (its
    ``ready {broker}`` line is what a test waits for)."""
    return [
        sys.executable, "-m", "fogmesh.broker", "--log-level", "INFO",
        "run", "--mesh", str(mesh), "--broker", broker, *args,
    ]  # fmt: skip


def wait_ready(
    proc: subprocess.Popen[bytes], log: Path, broker: str, timeout: float = 30.0
) -> None:
    """Block until ``log`` (the output of ``proc``, a :func:`mesh_broker_command`) has the
    ``ready {broker}`` line; RuntimeError with the log's tail if ``proc`` ends or ``timeout``
    seconds pass first."""
    deadline = time.monotonic() + timeout
    while f"ready {broker}" not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{broker} did not start:\n{tail}")
        time.sleep(0.05)


def require_mosquitto() -> str:
    """:data:`MOSQUITTO`; fails the test where it is not installed."""
    if not Path(MOSQUITTO).exists():
        pytest.fail("mosquitto is not installed; .ci/run installs it")
    return MOSQUITTO


@contextlib.contextmanager
def mosquitto_etc() -> Iterator[Path]:
    """Where Mosquitto's files go: a directory its own user can reach (pytest's are 0700)."""
    path = Path(tempfile.mkdtemp(prefix="fm-mosquitto-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


class Mosquitto:
    """``mosquitto -c CONF`` (a rendered configuration) as a child process, its output in a log
    file."""

    def __init__(self, conf: Path, log: Path) -> None:
        self.log = log
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [require_mosquitto(), "-c", str(conf)], stdout=out, stderr=out
            )

    def wait_serving(self, port: int) -> None:
        try:
            wait_port(port, timeout=30)
        except TimeoutError:
            raise AssertionError(f"mosquitto did not start:\n{self.log.read_text()}") from None
        assert self.proc.poll() is None, self.log.read_text()

    def stop(self) -> None:
        terminate(self.proc, 10)


@dataclass
class BrokerProcess:
    """A broker child process that can be stopped, killed and started again on the same port."""

    kind: str  # "amqtt" or "mosquitto"
    workdir: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> BrokerProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = (self.workdir / f"{self.kind}-{self.port}.log").open("ab")
        if self.kind == "amqtt":
            cmd = [sys.executable, "-m", "tests.support.run_amqtt", str(self.port)]
        elif self.kind == "mosquitto":
            conf = self.workdir / f"mosquitto-{self.port}.conf"
            conf.write_text(
                f"listener {self.port} 127.0.0.1\n"
                "allow_anonymous true\n"
                "persistence true\n"
                f"persistence_location {self.workdir}/\n"
                "max_queued_messages 100000\n"
                "set_tcp_nodelay true\n"
            )
            cmd = [require_mosquitto(), "-c", str(conf)]
        else:
            raise ValueError(self.kind)
        self.proc = subprocess.Popen(
            cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env={**os.environ}
        )
        wait_port(self.port)
        return self

    def stop(self) -> None:
        """Stop gracefully (SIGTERM), waiting for the process to end."""
        terminate(self.proc, 10)
        self.proc = None

    def kill(self) -> None:
        """SIGKILL: the broker dies without a word."""
        kill(self.proc)
        self.proc = None
