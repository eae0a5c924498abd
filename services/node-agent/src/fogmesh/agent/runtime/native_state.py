"""On-disk layout of one native instance, and the check that its recorded process still runs.

::

    {state_dir}/{dir}/              dir = the workload name, or a safe form of it plus a hash
        spec.json                   the WorkloadSpec (its presence means "the instance exists")
        run/shim.json               the shim's configuration for the current / last run
        run/instance.json           pid, create_time, started_at of the current / last run
        run/exit.json               exit_code, finished_at of the last run (absent while running)
        logs/app.log[.1 ...]        merged stdout + stderr, "{unix time} {line}" per line
        work/                       the working directory (cwd, HOME, put_file root)
        work/state/                 the state that snapshot / restore move
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

__all__ = ["CREATE_TIME_SLACK", "Layout", "alive_process", "read_json", "shim_alive", "write_json"]

CREATE_TIME_SLACK = 0.05
"""Seconds two create times of one process may differ (psutil derives them from boot time)."""

_SAFE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class Layout:
    """Paths of one native instance."""

    root: Path

    @classmethod
    def of(cls, state_dir: Path, name: str) -> Layout:
        """The layout of workload ``name`` under ``state_dir``."""
        if _SAFE.match(name) and len(name) <= 100:
            return cls(state_dir / name)
        cleaned = re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:60].lstrip(".")
        return cls(state_dir / f"{cleaned}_{hashlib.sha256(name.encode()).hexdigest()[:10]}")

    @property
    def spec(self) -> Path:
        """``spec.json``."""
        return self.root / "spec.json"

    @property
    def run(self) -> Path:
        """``run/``: the shim's files."""
        return self.root / "run"

    @property
    def shim_config(self) -> Path:
        """``run/shim.json``."""
        return self.run / "shim.json"

    @property
    def record(self) -> Path:
        """``run/instance.json``."""
        return self.run / "instance.json"

    @property
    def exit(self) -> Path:
        """``run/exit.json``."""
        return self.run / "exit.json"

    @property
    def logs(self) -> Path:
        """``logs/``."""
        return self.root / "logs"

    @property
    def log(self) -> Path:
        """``logs/app.log``: the current log file."""
        return self.logs / "app.log"

    @property
    def work(self) -> Path:
        """``work/``: the working directory."""
        return self.root / "work"

    @property
    def state(self) -> Path:
        """``work/state/``."""
        return self.work / "state"

    def log_files(self) -> list[Path]:
        """The log files, oldest first."""
        rotated = []
        for path in self.logs.glob("app.log.*"):
            suffix = path.name.rsplit(".", 1)[-1]
            if suffix.isdigit():
                rotated.append((int(suffix), path))
        files = [p for _, p in sorted(rotated, reverse=True)]
        if self.log.exists():
            files.append(self.log)
        return files


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``; ``None`` if missing or unreadable (a torn write)."""
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def write_json(path: Path, value: dict[str, Any]) -> None:
    """Write ``value`` to ``path`` atomically (temporary file + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(value, sort_keys=True))
    tmp.replace(path)


def alive_process(record: dict[str, Any] | None) -> psutil.Process | None:
    """The recorded process if it still runs: same pid *and* same create time (so a reused
    pid is not mistaken for it), and not a zombie."""
    if not record or not record.get("pid"):
        return None
    with contextlib.suppress(psutil.Error, ValueError, TypeError):
        proc = psutil.Process(int(record["pid"]))
        if abs(proc.create_time() - float(record.get("create_time") or 0)) > CREATE_TIME_SLACK:
            return None
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc
    return None


def shim_alive(record: dict[str, Any] | None) -> bool:
    """Whether the shim recorded in ``record`` still runs (and so will write exit.json)."""
    if not record or not record.get("shim"):
        return False
    with contextlib.suppress(psutil.Error, ValueError, TypeError):
        return bool(psutil.Process(int(record["shim"])).status() != psutil.STATUS_ZOMBIE)
    return False
