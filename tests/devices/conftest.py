"""Fixtures of the device tests: a device root the test controls, with real device nodes."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

# The runtime fixtures (run_id, busybox, docker_rt, native_dir) are the runtime tests' own.
from tests.agent.conftest import agents, broker, probe, run_label
from tests.agent_runtime.conftest import busybox, native_dir, run_id

__all__ = [
    "agents",
    "broker",
    "busybox",
    "device_root",
    "native_dir",
    "probe",
    "run_id",
    "run_label",
]


@pytest.fixture
def device_root() -> Iterator[Path]:
    """A device root (``dev/``, ``sys/``) every user may traverse (pytest's own tmp dirs are
    0700, which would hide the nodes from a tenant's user whatever the node's own access)."""
    root = Path(tempfile.mkdtemp(prefix="fm-devices-"))
    root.chmod(0o755)
    (root / "dev").mkdir(mode=0o755)
    (root / "dev").chmod(0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def make_char_device(path: Path, major: int = 1, minor: int = 5, mode: int = 0o600) -> Path:
    """``mknod path c major minor`` (1:5 is /dev/zero: every read gives zero bytes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mknod(path, mode | 0o020000, os.makedev(major, minor))
    path.chmod(mode)
    return path
