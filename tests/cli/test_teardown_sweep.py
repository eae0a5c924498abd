"""``fogmesh up``'s teardown in order: the agents are stopped and gone before the core is
told to stop, and the sweep of the fleet's leftovers goes on until nothing of the fleet
comes back (a workload started after the first look, a container a dead agent's last request
made), while nothing of another fleet is touched."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import uuid
from pathlib import Path

import pytest

from fogmesh.cli.fleet.processes import ProcessSet
from fogmesh.cli.fleet.teardown import fleet_containers, remove_leftovers
from tests.support.images import build_busybox_image

# Writes "{name} {what}" lines to a journal: "term" at SIGTERM, "exit" when it ends (an agent
# takes a moment to stop, as a real one does while it says offline).
CHILD = textwrap.dedent(
    """
    import os, signal, sys, time
    journal, name, linger = sys.argv[1], sys.argv[2], float(sys.argv[3])
    def note(what):
        with open(journal, "a") as out:
            out.write(f"{name} {what}\\n")
    def ended(*_):
        note("term")
        time.sleep(linger)
        note("exit")
        os._exit(0)
    signal.signal(signal.SIGTERM, ended)
    note("up")
    while True:
        time.sleep(0.1)
    """
)


def _wait_for_lines(journal: Path, count: int) -> None:
    for _ in range(300):
        if journal.exists() and len(journal.read_text().splitlines()) >= count:
            return
        threading.Event().wait(0.1)
    raise AssertionError(f"only {journal.read_text() if journal.exists() else ''!r}")


def test_the_agents_are_gone_before_the_core_is_stopped(tmp_path: Path) -> None:
    journal = tmp_path / "journal"
    procs = ProcessSet(tmp_path / "logs", marker_env={"FOGMESH_FLEET": "f-order"})
    procs.run("broker-cloud", [sys.executable, "-c", CHILD, str(journal), "broker", "0"])
    procs.run("registry", [sys.executable, "-c", CHILD, str(journal), "registry", "0"])
    for node in ("edge-1", "edge-2"):
        argv = [sys.executable, "-c", CHILD, str(journal), node, "1.0"]
        procs.run(f"agent-{node}", argv, node=node)
    _wait_for_lines(journal, 4)

    procs.stop_all(timeout=10)

    lines = [line for line in journal.read_text().splitlines() if not line.endswith(" up")]
    first_core = min(lines.index("broker term"), lines.index("registry term"))
    for node in ("edge-1", "edge-2"):
        assert lines.index(f"{node} exit") < first_core, lines
    assert all(not c.alive for c in procs.children)


# Starts a workload of the fleet as soon as the first one is gone: a shim restarting it, or
# an agent's request that dockerd finishes after the first sweep looked.
RELAUNCHER = textwrap.dedent(
    """
    import os, subprocess, sys, time
    first, fleet, marker = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    while True:
        try:
            os.kill(first, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    late = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(120)"],
        env={**os.environ, "FOGMESH_FLEET": fleet}, start_new_session=True,
    )
    with open(marker, "w") as out:
        out.write(str(late.pid))
    """
)


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # a zombie that its parent (the relauncher, gone) left to init is gone too
    stat = Path(f"/proc/{pid}/stat")
    return not stat.exists() or stat.read_text().split(") ")[-1].startswith("Z")


def test_a_workload_started_after_the_first_sweep_is_swept_too(
    tmp_path: Path, started: list[subprocess.Popen[bytes]]
) -> None:
    fleet = f"f-{uuid.uuid4().hex[:8]}"
    root = tmp_path / "fleet"
    root.mkdir()
    sleeper = [sys.executable, "-c", "import time; time.sleep(120)"]
    first = subprocess.Popen(sleeper, env={**os.environ, "FOGMESH_FLEET": fleet})
    marker = tmp_path / "late.pid"
    relauncher = subprocess.Popen(  # not the fleet's: unmarked, outside its directory
        [sys.executable, "-c", RELAUNCHER, str(first.pid), fleet, str(marker)]
    )
    other = subprocess.Popen(sleeper, env={**os.environ, "FOGMESH_FLEET": "someone-else"})
    started.extend([first, relauncher, other])

    counts = remove_leftovers(fleet, root, settle=5.0)

    assert relauncher.wait(timeout=30) == 0
    late = int(marker.read_text())
    assert _gone(late), f"the late workload {late} survived the teardown"
    assert counts["processes"] == 2
    assert other.poll() is None  # another fleet's process is left alone


def _docker(*args: str) -> str:
    done = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, f"docker {' '.join(args)}: {done.stderr.strip()}"
    return done.stdout.strip()


@pytest.fixture
def image() -> str:
    if subprocess.run(["docker", "info"], capture_output=True, check=False).returncode != 0:
        pytest.fail("dockerd does not answer; run .ci/docker.sh")
    return build_busybox_image()


def test_a_container_made_after_the_first_sweep_is_removed_too(image: str, tmp_path: Path) -> None:
    fleet = f"f-{uuid.uuid4().hex[:8]}"
    labels = ["--label", f"fogmesh.fleet={fleet}", "--label", "fogmesh.node=edge-1"]
    first = _docker("create", *labels, image, "sleep", "120")
    stranger = _docker("create", "--label", "fogmesh.fleet=someone-else",
                       "--label", "fogmesh.node=edge-1", image, "sleep", "120")  # fmt: skip
    made: list[str] = []

    def late_create() -> None:  # dockerd finishing a dead agent's create, after the first look
        while first[:12] in fleet_containers(fleet):
            threading.Event().wait(0.05)
        made.append(_docker("create", *labels, image, "sleep", "120"))

    creator = threading.Thread(target=late_create, daemon=True)
    creator.start()
    try:
        counts = remove_leftovers(fleet, tmp_path, settle=5.0)
        creator.join(timeout=60)
        assert made, "the late container was not made"
        assert fleet_containers(fleet) == [], "a container of the fleet is left"
        assert counts["containers"] == 2
        assert _docker("ps", "-aq", "--filter", f"id={stranger}") != ""
    finally:
        left = fleet_containers(fleet)
        subprocess.run(["docker", "rm", "-f", *left, stranger], capture_output=True, check=False)


# Starts a marked workload again and again, as a runaway shim would, until told to stop.
RESPAWNER = textwrap.dedent(
    """
    import os, subprocess, sys, time
    fleet, stop = sys.argv[1], sys.argv[2]
    while not os.path.exists(stop):
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"],
                         env={**os.environ, "FOGMESH_FLEET": fleet})
        time.sleep(0.1)
    """
)

SWEEP = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from fogmesh.cli.fleet.teardown import remove_leftovers
    from fogmesh.service import configure_logging
    configure_logging("warning", json_lines=True)
    remove_leftovers(sys.argv[1], Path(sys.argv[2]), bound=3.0, settle=0.5)
    """
)


def test_what_keeps_coming_back_is_named_once_the_bound_passes(
    tmp_path: Path, started: list[subprocess.Popen[bytes]]
) -> None:
    fleet = f"f-{uuid.uuid4().hex[:8]}"
    root = tmp_path / "fleet"
    root.mkdir()
    stop = tmp_path / "stop"
    respawner = subprocess.Popen([sys.executable, "-c", RESPAWNER, fleet, str(stop)])
    started.append(respawner)
    try:
        swept = subprocess.run(
            [sys.executable, "-c", SWEEP, fleet, str(root)],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
    finally:
        stop.touch()
        respawner.wait(timeout=30)
    assert swept.returncode == 0, swept.stderr
    warned = [line for line in swept.stderr.splitlines() if "teardown left" in line]
    assert len(warned) == 1, swept.stderr
    assert fleet in warned[0]
    assert "time.sleep(30)" in warned[0]  # the process left, by its pid and command line
    remove_leftovers(fleet, root, settle=0.5)  # the last ones, now that nothing starts them
