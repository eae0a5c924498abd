"""Fixtures of the CLI tests."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from tests.support.processes import kill


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Child processes started by the test, killed after it."""
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        kill(proc)
