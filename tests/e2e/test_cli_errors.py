"""The CLI against a broker that is down, and against bad input: one clear line, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.brokers import free_port

FOGMESH = str(Path(sys.executable).with_name("fogmesh"))


@pytest.mark.parametrize(
    "command", [["nodes"], ["apps"], ["workloads"], ["events"], ["logs", "w1"], ["delete", "app1"]]
)
def test_broker_down_is_one_line_and_nonzero(command: list[str]) -> None:
    port = free_port()
    done = subprocess.run(
        [FOGMESH, "--broker", f"127.0.0.1:{port}", *command],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert "Traceback" not in done.stderr + done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert f"cannot reach the broker at 127.0.0.1:{port}" in lines[0]


def test_bad_manifest_is_named(tmp_path: Path) -> None:
    manifest = tmp_path / "bad.yaml"
    manifest.write_text("name: x\ncomponents: [{name: c, runtime: docker, replicas: -1}]\n")
    done = subprocess.run(
        [FOGMESH, "--broker", f"127.0.0.1:{free_port()}", "deploy", str(manifest)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "replicas" in done.stderr


def test_bad_broker_setting_is_refused() -> None:
    done = subprocess.run(
        [FOGMESH, "--broker", "nonsense", "nodes"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "host:port" in done.stderr
    assert "Traceback" not in done.stderr


def test_bad_broker_environment_is_one_line(tmp_path: Path) -> None:
    # a CA without TLS, as a stale fleet.env could leave it: one line and exit 2, no traceback
    env = {
        **os.environ,
        "FOGMESH_BROKER": f"127.0.0.1:{free_port()}",
        "FOGMESH_BROKER_CA_FILE": str(tmp_path / "ca.pem"),
    }
    env.pop("FOGMESH_BROKER_TLS", None)
    done = subprocess.run(
        [FOGMESH, "nodes"], capture_output=True, text=True, timeout=60, check=False, env=env
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        "error: bad broker settings in the environment: Value error, ca_file need tls: true"
    ]
