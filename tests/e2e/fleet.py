"""Helpers for end-to-end tests that run ``fogmesh up`` as a user would."""

from __future__ import annotations

import shlex
import subprocess
import threading
import time
from pathlib import Path

import psutil
import yaml

__all__ = ["OutputReader", "fleet_id", "leftovers", "read_env", "wait_for_file"]


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
        deadline = time.monotonic() + timeout
        while needle not in self.text():
            if proc.poll() is not None:
                time.sleep(0.5)
                raise AssertionError(f"process exited ({proc.returncode}):\n{self.text()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {needle!r} after {timeout}s:\n{self.text()}")
            time.sleep(0.2)


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
