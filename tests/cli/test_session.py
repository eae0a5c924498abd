"""The CLI's connection to a real embedded broker: no noise in the broker's log, and a refused
account is one clear line."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from tests.broker.conftest import PASSWORDS, MeshProcess, broker_spec, port_of, procs, write_mesh

__all__ = ["procs"]

FOGMESH = str(Path(sys.executable).with_name("fogmesh"))


def _fogmesh(port: int, user: str, password: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FOGMESH_USERNAME": user, "FOGMESH_PASSWORD": password}
    return subprocess.run(
        [FOGMESH, "--broker", f"127.0.0.1:{port}", "--timeout", "2", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


def test_a_command_leaves_no_error_in_the_broker_log(
    tmp_path: Path, procs: list[MeshProcess]
) -> None:
    mesh = write_mesh(tmp_path / "mesh.yaml", {"site": broker_spec(tmp_path, "site")}, [])
    broker = MeshProcess(mesh, "site").start()
    procs.append(broker)
    # the test's own TCP wait for the port is logged (later) as "No data": look only after it
    time.sleep(1.5)
    since = time.strftime("%Y-%m-%d %H:%M:%S")
    # no scheduler answers: the command times out, after a full connect and disconnect
    done = _fogmesh(port_of(mesh, "site"), "acme", PASSWORDS["acme"], "--tenant", "acme", "apps")
    assert "Traceback" not in done.stderr
    assert "cannot reach" not in done.stderr
    broker.stop()
    lines = broker.log.read_text(errors="replace").splitlines()
    log = "\n".join(line for line in lines if line[:19] >= since)
    assert "connections acquired" in log, "the command never reached the broker"
    assert "ERROR" not in log, log
    assert "WARNING" not in log, log
    assert "No data from" not in log, log


def test_a_refused_account_is_one_line(tmp_path: Path, procs: list[MeshProcess]) -> None:
    mesh = write_mesh(tmp_path / "mesh.yaml", {"site": broker_spec(tmp_path, "site")}, [])
    procs.append(MeshProcess(mesh, "site").start())
    done = _fogmesh(port_of(mesh, "site"), "acme", "wrong", "apps")
    assert done.returncode == 3
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "refused the connection as acme" in lines[0]
