"""The node's copy of its desired state on disk: ``{state_dir}/desired.json``.

Written atomically (a temporary file in the same directory, fsync, rename, fsync of the
directory), so a crash or power loss leaves either the old or the new desired state, never a
torn one. A desired state older (lower ``generation``) than the one held is not accepted.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import structlog
from pydantic import ValidationError

from fogmesh.protocol import DesiredState

__all__ = ["DESIRED_FILE", "STOPPED_FILE", "DesiredStore", "StoppedWorkloads", "atomic_write"]

DESIRED_FILE = "desired.json"
STOPPED_FILE = "stopped.json"

log = structlog.get_logger("fogmesh.agent.store")


def atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` by ``data`` atomically and durably."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)
    tmp.replace(path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class DesiredStore:
    """Holds the current desired state, mirrored on disk."""

    def __init__(self, state_dir: Path, node: str) -> None:
        self.path = state_dir / DESIRED_FILE
        self.node = node
        self.current: DesiredState | None = None

    @property
    def generation(self) -> int:
        """The generation held, -1 before any."""
        return -1 if self.current is None else self.current.generation

    def load(self) -> DesiredState | None:
        """Read the desired state from disk (None if there is none or it is unusable)."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            desired = DesiredState.model_validate_json(raw)
        except ValidationError as exc:
            log.error(  # noqa: TRY400 -- the reason is the message; no traceback needed
                "desired state on disk is unusable; ignoring it", error=str(exc)[:500]
            )
            return None
        if desired.node != self.node:
            log.error("desired state on disk is for another node", node=desired.node)
            return None
        self.current = desired
        return desired

    def accept(self, desired: DesiredState) -> bool:
        """Hold and persist ``desired`` unless it is older than (or as old as) the one held.

        Returns True when it was taken (and written to disk).
        """
        if self.current is not None and desired.generation <= self.current.generation:
            if desired.generation < self.current.generation:
                log.info(
                    "ignoring an older desired state",
                    generation=desired.generation,
                    held=self.current.generation,
                )
            return False
        atomic_write(self.path, desired.model_dump_json().encode())
        self.current = desired
        return True


class StoppedWorkloads:
    """The workload keys a tenant stopped (``cmd/stop``), mirrored on disk in
    ``{state_dir}/stopped.json``: the reconciler leaves them stopped, across agent restarts
    too, until ``cmd/start`` or their removal."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / STOPPED_FILE
        self.keys: set[str] = set()

    def load(self) -> set[str]:
        """Read the keys from disk (none if the file is missing or unusable)."""
        try:
            data = json.loads(self.path.read_bytes())
        except FileNotFoundError:
            return self.keys
        except ValueError:
            log.error("stopped workloads on disk are unusable; ignoring them")  # noqa: TRY400
            return self.keys
        if isinstance(data, list):
            self.keys = {k for k in data if isinstance(k, str)}
        return self.keys

    def __contains__(self, key: object) -> bool:
        return key in self.keys

    def set(self, key: str, stopped: bool) -> None:
        """Mark ``key`` stopped (or not) and persist the change."""
        before = set(self.keys)
        if stopped:
            self.keys.add(key)
        else:
            self.keys.discard(key)
        if self.keys != before:
            atomic_write(self.path, json.dumps(sorted(self.keys)).encode())
