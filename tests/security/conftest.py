"""What the security tests share: the CLI as a process; the matrix modules' fleet."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.security.matrix_cases import FLEET_KINDS, matrix_fleet
from tests.support.brokers import REPO
from tests.support.documented_fleet import Fleet
from tests.support.mesh_file import PASSWORDS

__all__ = ["fleet", "fogmesh"]


@pytest.fixture(scope="module", params=FLEET_KINDS)
def fleet(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fleet]:
    """The broker of ``request.param``, registry, scheduler and agent, both apps running."""
    with matrix_fleet(request.param, tmp_path_factory) as made:
        yield made


def fogmesh(port: int, *args: str, user: str = "svc", check: bool = True) -> str:
    """Run the ``fogmesh`` CLI against the broker on ``port`` as ``user``; its stdout."""
    env = {
        **os.environ,
        "FOGMESH_BROKER": f"127.0.0.1:{port}",
        "FOGMESH_USERNAME": user,
        "FOGMESH_PASSWORD": PASSWORDS[user],
        "COLUMNS": "200",
    }
    done = subprocess.run(
        [sys.executable, "-m", "fogmesh.cli", "--timeout", "30", *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    if check and done.returncode != 0:
        raise AssertionError(f"fogmesh {' '.join(args)} failed: {done.stdout}{done.stderr}")
    return done.stdout
