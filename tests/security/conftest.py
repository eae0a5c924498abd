"""What the security tests share: the CLI as a process."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.support.brokers import REPO
from tests.support.mesh_file import PASSWORDS

__all__ = ["fogmesh"]


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
