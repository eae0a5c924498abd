"""The sample app as a container built locally by deploy/images/sample-app/build.sh."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.sample_app.helpers import (
    BUILD_SH,
    Collector,
    Names,
    app_env,
    count_lines,
    send_readings,
    sensor_env,
    wait_for,
)
from tests.sample_app.test_native import assert_outputs_match_inputs
from tests.support.brokers import BrokerProcess

pytestmark = pytest.mark.docker

LABEL = "fogmesh.test=sample-app"


def docker(*args: str, timeout: float = 120, check: bool = True) -> str:
    done = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and done.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout.strip()


@pytest.fixture(scope="session")
def sample_image() -> str:
    """Build (or reuse, when the content hash matches) fogmesh/sample-app:latest."""
    if subprocess.run(["docker", "info"], capture_output=True, check=False).returncode != 0:
        pytest.fail("dockerd does not answer; run .ci/docker.sh")
    started = time.monotonic()
    done = subprocess.run([str(BUILD_SH)], capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, f"build.sh failed:\n{done.stderr[-4000:]}"
    tag = done.stdout.strip().splitlines()[-1]
    print(f"build.sh: {tag} ready in {time.monotonic() - started:.1f}s")
    return tag


@pytest.fixture
def containers() -> Iterator[str]:
    """A run id; every container labelled with it is removed afterwards."""
    run = uuid.uuid4().hex[:10]
    yield run
    ids = docker("ps", "-aq", "--filter", f"label={LABEL}-{run}", check=False).split()
    if ids:
        docker("rm", "-f", *ids, check=False)


def container_env(env: dict[str, str]) -> list[str]:
    return [arg for key, value in env.items() for arg in ("-e", f"{key}={value}")]


def test_image_runs_the_convolver_by_default(sample_image: str) -> None:
    cmd = docker("image", "inspect", "--format", "{{json .Config.Cmd}}", sample_image)
    assert cmd == '["python3","-m","fogmesh_sample.convolve"]'
    out = docker(
        "run",
        "--rm",
        sample_image,
        "python3",
        "-c",
        "import paho.mqtt, fogmesh_sample.convolve as c; print(paho.mqtt.__version__, "
        "c.op_counts(50, 50))",
    )
    assert out.endswith("(5000, 2500)"), out
    assert out.startswith("2."), out


def test_containerised_convolver_keeps_its_session_across_a_stop(
    sample_image: str, broker: BrokerProcess, containers: str, tmp_path: Path
) -> None:
    """Convolver container (default command, --network host) + native sensor: results arrive.
    Then ``docker stop`` (SIGTERM, exit 0), 12 readings are published by the *containerised*
    sensor (command overridden) while the convolver is away, and ``docker start`` brings the
    same container, hence the same client id, back: all 12 queued readings are convolved."""
    names = Names()
    env = app_env(broker, names.tenant, names.app, FM_CLIENT_ID=f"{names.tenant}-conv")
    sensor = sensor_env(env, names.tenant)
    name = f"fm-sample-conv-{containers}"
    label = f"{LABEL}-{containers}"

    def logs() -> str:
        done = subprocess.run(
            ["docker", "logs", name], capture_output=True, text=True, timeout=60, check=False
        )
        return done.stdout + done.stderr

    with Collector(broker, names) as collector:
        docker(
            "run", "-d", "--name", name, "--label", label, "--network", "host",
            *container_env(env), sample_image,
        )  # fmt: skip
        wait_for("the convolver container to subscribe", lambda: "subscribed" in logs())

        # 1. native sensor -> container convolver
        send_readings(sensor, tmp_path / "sensor.log", 8, 4)
        first = set(range(8))
        wait_for("8 results from the container", lambda: collector.seqs_out() >= first)
        assert_outputs_match_inputs(collector, first)
        assert {o["worker"] for o in collector.outputs.values()} == {f"{names.tenant}-conv"}

        # 2. stop: SIGTERM, clean exit
        docker("stop", "--time", "30", name, timeout=90)
        assert docker("inspect", "--format", "{{.State.ExitCode}}", name) == "0", logs()
        assert "SIGTERM: stopping" in logs()

        # 3. readings while the convolver is away, from the sensor in the same image
        docker(
            "run", "--rm", "--label", label, "--network", "host", *container_env(sensor),
            sample_image, "python3", "-m", "fogmesh_sample.sensor",
            "--count", "12", "--seq-start", "8", "--seed", "5",
        )  # fmt: skip
        away = set(range(8, 20))
        wait_for("12 readings on .../in", lambda: collector.seqs_in() >= away)
        assert not collector.seqs_out() & away  # nobody convolved them yet

        # 4. same container, same client id: the broker hands over the queued readings
        docker("start", name)
        wait_for("the queued readings to be convolved", lambda: collector.seqs_out() >= away)
        assert_outputs_match_inputs(collector, first | away)
        assert count_lines(logs(), "session present: True") >= 1
        docker("stop", "--time", "30", name, timeout=90)
        assert docker("inspect", "--format", "{{.State.ExitCode}}", name) == "0", logs()
