"""On-disk layout of one native instance, and the check that its recorded process still runs.

::

    {state_dir}/                    0711: workload users may pass, never list
        .artefacts/                 0700: the artefact cache
        {tenant}/                   0710, group = the tenant's: only its user passes
            {dir}/                  0710, group = the tenant's; dir = the workload name
                spec.json           the WorkloadSpec (its presence means "the instance exists")
                run/shim.json       the shim's configuration for the current / last run
                run/instance.json   pid, create_time, started_at of the current / last run
                run/exit.json       exit_code, finished_at of the last run (absent while running)
                logs/app.log[.1]    merged stdout + stderr, "{unix time} {line}" per line
                work/               0700, owned by the tenant's user: cwd, HOME, put_file root
                work/state/         the state that snapshot / restore move

``{tenant}`` and ``{dir}`` are the identifiers themselves, or (when not a safe file name) a
safe form plus a hash, so equal workload names of two tenants never share a directory.
Everything but ``work/`` belongs to the agent (root) and is 0600 / 0700 (the modes are set
by :mod:`.native`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psutil

__all__ = [
    "CREATE_TIME_SLACK",
    "SHIM_START_SLACK",
    "Layout",
    "alive_process",
    "read_json",
    "safe_dir_name",
    "shim_alive",
    "write_json",
]

CREATE_TIME_SLACK = 0.05
SHIM_START_SLACK = 2.0
"""How much later than the app's start a shim without its own create time may seem created
(the boot time's whole seconds in ``/proc/stat``)."""
"""Seconds two create times of one process may differ (psutil derives them from boot time)."""

_SAFE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class Layout:
    """Paths of one native instance."""

    root: Path

    @classmethod
    def of(cls, state_dir: Path, tenant: str, name: str) -> Layout:
        """The layout of ``tenant``'s workload ``name`` under ``state_dir``."""
        return cls(state_dir / safe_dir_name(tenant) / safe_dir_name(name))

    @property
    def tenant_dir(self) -> Path:
        """``{state_dir}/{tenant}/``: the parent of the tenant's instances."""
        return self.root.parent

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


def safe_dir_name(ident: str) -> str:
    """``ident`` as one directory name: itself when safe (never starting with ``.``, so no
    tenant can be ``.artefacts``), else a cleaned form plus a hash of the original."""
    if _SAFE.match(ident) and len(ident) <= 100:
        return ident
    cleaned = re.sub(r"[^A-Za-z0-9_.-]", "_", ident)[:60].lstrip(".")
    return f"{cleaned}_{hashlib.sha256(ident.encode()).hexdigest()[:10]}"


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``; ``None`` if missing or unreadable (a torn write)."""
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def write_json(path: Path, value: dict[str, Any]) -> None:
    """Write ``value`` to ``path`` atomically (temporary file + rename), mode 0600: the spec
    and the shim's configuration hold the workload's environment (credentials)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(json.dumps(value, sort_keys=True))
    tmp.replace(path)


def alive_process(record: dict[str, Any] | None) -> psutil.Process | None:
    """The recorded process if it still runs: same pid *and* same create time (so a reused
    pid is not mistaken for it), and not a zombie. psutil is imported here, on first use: an
    agent without native workloads never loads it (docs/agent.md, "Memory")."""
    if not record or not record.get("pid"):
        return None
    import psutil

    with contextlib.suppress(psutil.Error, ValueError, TypeError):
        proc = psutil.Process(int(record["pid"]))
        if abs(proc.create_time() - float(record.get("create_time") or 0)) > CREATE_TIME_SLACK:
            return None
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc
    return None


def shim_alive(record: dict[str, Any] | None) -> bool:
    """Whether the shim recorded in ``record`` still runs (and so will write exit.json).

    The pid must still be that shim's: its create time is the one the record holds, or, in a
    record of an older shim that wrote none, no later than the app's start (a pid reused after
    a reboot names a newer process)."""
    if not record or not record.get("shim"):
        return False
    import psutil

    with contextlib.suppress(psutil.Error, ValueError, TypeError):
        proc = psutil.Process(int(record["shim"]))
        created, recorded = proc.create_time(), float(record.get("shim_create_time") or 0)
        if recorded and abs(created - recorded) > CREATE_TIME_SLACK:
            return False
        if not recorded and created > float(record.get("started_at") or 0) + SHIM_START_SLACK:
            return False
        return bool(proc.status() != psutil.STATUS_ZOMBIE)
    return False
    import psutil

    with contextlib.suppress(psutil.Error, ValueError, TypeError):
        return bool(psutil.Process(int(record["shim"])).status() != psutil.STATUS_ZOMBIE)
    return False
