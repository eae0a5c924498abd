"""The child processes of ``fogmesh up``: started in their own process groups, logged to
files, stopped with SIGTERM and, past a deadline, SIGKILL: the nodes first, then the core in
reverse order.

A child is either part of the fleet's core (a broker, the registry, the scheduler, the
migrator) or a node (an agent): a node may die and come back, the core may not."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["ChildProcess", "ProcessSet", "wait_port"]


def wait_port(
    port: int, *, timeout: float = 30.0, proc: subprocess.Popen[bytes] | None = None
) -> bool:
    """Wait until 127.0.0.1:``port`` accepts connections (False on timeout or if ``proc`` died)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return True
        time.sleep(0.05)
    return False


@dataclass
class ChildProcess:
    """One child: a name, its command, its log file."""

    name: str
    argv: list[str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    node: str | None = None
    """The node this child is the agent of (None: part of the fleet's core)."""
    env: dict[str, str] = field(default_factory=dict)

    def start(self, env: dict[str, str] | None = None) -> None:
        """Start it in a new session (own process group), output to its log file; a second
        start (a revived node) runs the same command with the same environment."""
        if env is not None:
            self.env = dict(env)
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env={**os.environ, **self.env},
            )

    @property
    def exit_reason(self) -> str:
        """How it ended: ``exit code N`` or ``killed by SIGKILL`` ("running" while alive)."""
        code = None if self.proc is None else self.proc.poll()
        if code is None:
            return "running" if self.proc is not None else "not started"
        if code < 0:
            with contextlib.suppress(ValueError):
                return f"killed by {signal.Signals(-code).name}"
        return f"exit code {code}"

    @property
    def alive(self) -> bool:
        """Whether the process is still running."""
        return self.proc is not None and self.proc.poll() is None

    def signal_group(self, sig: int) -> None:
        """Send ``sig`` to the whole process group."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, sig)


@dataclass
class ProcessSet:
    """Children in start order; :meth:`stop_all` stops the nodes, then the core in reverse."""

    log_dir: Path
    children: list[ChildProcess] = field(default_factory=list)
    marker_env: dict[str, str] = field(default_factory=dict)
    """Put into every child's environment (teardown finds the fleet's processes by it)."""

    def python(
        self,
        name: str,
        module: str,
        *args: str,
        env: dict[str, str] | None = None,
        node: str | None = None,
    ) -> ChildProcess:
        """Start ``python -m module args`` as child ``name``."""
        return self.run(name, [sys.executable, "-m", module, *args], env=env, node=node)

    def run(
        self,
        name: str,
        argv: list[str],
        *,
        env: dict[str, str] | None = None,
        node: str | None = None,
    ) -> ChildProcess:
        """Start ``argv`` as child ``name`` (the agent of ``node``, if given)."""
        child = ChildProcess(name, argv, self.log_dir / f"{name}.log", node=node)
        child.start({**self.marker_env, **(env or {})})
        self.children.append(child)
        return child

    def dead(self) -> list[ChildProcess]:
        """Children that have exited."""
        return [c for c in self.children if not c.alive]

    def agent(self, node: str) -> ChildProcess | None:
        """The agent child of ``node``, if the fleet has that node."""
        return next((c for c in self.children if c.node == node), None)

    def stop(self, child: ChildProcess, timeout: float = 10.0) -> None:
        """SIGTERM the child's group, then SIGKILL it past ``timeout``."""
        child.signal_group(signal.SIGTERM)
        if child.proc is None:
            return
        try:
            child.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            child.signal_group(signal.SIGKILL)
            child.proc.wait(timeout=10)

    def stop_all(self, timeout: float = 10.0) -> None:
        """Stop the nodes first, then the core: every agent's group gets SIGTERM at once and
        is waited for (SIGKILL past ``timeout``), so that no agent is left to create a workload
        while the core stops and the fleet's leftovers are swept; then the core's groups, last
        started first, the same way."""
        agents = [c for c in reversed(self.children) if c.node is not None]
        self._stop_together(agents, timeout)
        self._stop_together([c for c in reversed(self.children) if c.node is None], timeout)

    @staticmethod
    def _stop_together(children: list[ChildProcess], timeout: float) -> None:
        """SIGTERM each child's group, wait for them together, then SIGKILL whoever is left
        and wait for it too."""
        for child in children:
            child.signal_group(signal.SIGTERM)
            child.signal_group(signal.SIGCONT)  # a node stopped by `fleet kill --silent`
        deadline = time.monotonic() + timeout
        for child in children:
            if child.proc is None:
                continue
            try:
                child.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.signal_group(signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.proc.wait(timeout=10)
