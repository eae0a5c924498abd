"""Exit codes a script can test, for the listing commands' ``-o``: a broker that cannot be
reached is 3 with nothing on stdout (no half answer for ``jq``), a bad format is 2. (The
formats themselves against a fleet: ``tests/dashboard/test_cli_output.py``.)"""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

from tests.support.brokers import free_port
from tests.support.documented_fleet import BIN


async def test_exit_codes_a_script_can_test(tmp_path: Path) -> None:
    env = {**os.environ, "FOGMESH_BROKER": f"127.0.0.1:{free_port()}"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "fogmesh"), "--timeout", "5", *args],
            capture_output=True, text=True, timeout=120, check=False, env=env, cwd=tmp_path,
        )  # fmt: skip

    unreachable = await asyncio.to_thread(run, "workloads", "-o", "json")
    assert unreachable.returncode == 3, unreachable.stderr
    assert "cannot reach the broker" in unreachable.stderr
    assert unreachable.stdout == ""
    bad_format = await asyncio.to_thread(run, "apps", "-o", "xml")
    assert bad_format.returncode == 2, bad_format.stderr
    assert "xml" in bad_format.stderr
