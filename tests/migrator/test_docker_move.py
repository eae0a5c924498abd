"""A planned move between two Docker agents on one engine (real dockerd, Mosquitto, the
scheduler and the migrator): the tenant's network is shared by both nodes' containers, and a
file written into the workload's volume comes along."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from fogmesh.agent.runtime.base import LABEL_NODE, LABEL_WORKLOAD
from fogmesh.protocol.events import EventKind, MigrationData
from fogmesh.protocol.migration import MigrateWorkload, MigrationAction, StageOutcome
from tests.agent.support import wait_for
from tests.migrator.support import stack
from tests.support.images import build_busybox_image

pytestmark = pytest.mark.docker

WORKLOAD = "keep-worker-0"
# Writes a mark and 256 KiB of noise into its volume once (a restored copy keeps both).
SCRIPT = (
    "if [ ! -f /data/mark ]; then head -c 262144 /dev/urandom > /data/blob; "
    'echo "mark-$$-$(date +%s)" > /data/mark; fi; '
    "trap 'exit 0' TERM; while true; do sleep 0.2; done"
)


def _docker(*args: str) -> str:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, check=False)
    return done.stdout


def _containers(run_label: str, node: str, *, running: bool = False) -> list[str]:
    """The ids of the test's containers of the workload on ``node``."""
    return _docker(
        "ps", "-q", *(() if running else ("-a",)), "--filter", f"label={run_label}",
        "--filter", f"label={LABEL_NODE}={node}", "--filter", f"label={LABEL_WORKLOAD}={WORKLOAD}",
    ).split()  # fmt: skip


def _read(run_label: str, node: str, path: str) -> str:
    """The text file at ``path`` in the workload's running container on ``node``."""
    [container] = _containers(run_label, node, running=True)
    return _docker("exec", container, "cat", path)


def _sha256(run_label: str, node: str, path: str) -> str:
    """The sha256 and size of the file at ``path`` (the noise is binary)."""
    [container] = _containers(run_label, node, running=True)
    return _docker("exec", container, "sh", "-c", f"sha256sum {path}; wc -c < {path}")


@pytest.fixture
def docker_cleanup(run_label: str) -> Iterator[None]:
    """Remove the containers, volumes and networks the agents made (they are killed)."""
    if subprocess.run(["docker", "info"], capture_output=True, check=False).returncode != 0:
        pytest.fail("dockerd does not answer; run .ci/docker.sh")
    yield
    wanted = ("--filter", f"label={run_label}")
    for container in _docker("ps", "-aq", *wanted).split():
        _docker("rm", "-f", "-v", container)
    for volume in _docker("volume", "ls", "-q", *wanted).split():
        _docker("volume", "rm", "-f", volume)
    for network in _docker("network", "ls", "-q", *wanted).split():
        _docker("network", "rm", network)


@pytest.mark.usefixtures("docker_cleanup")
async def test_docker_move_keeps_the_file_written_in_the_volume(
    tmp_path: Path, run_label: str
) -> None:
    image = build_busybox_image()
    async with stack(tmp_path, run_label, ["d-a", "d-b"], runtimes="docker") as st:
        reply = await st.deploy(
            "keep", runtime="docker", image=image, executable=None, command=["sh", "-c", SCRIPT],
            volumes=[{"name": "data", "mount_path": "/data"}],
        )  # fmt: skip
        source = reply.app.placements[0].node
        assert source is not None
        peer = "d-b" if source == "d-a" else "d-a"
        await wait_for(lambda: st.runs(source, WORKLOAD), 120, "the workload runs")
        await wait_for(lambda: bool(_read(run_label, source, "/data/mark")), 60, "the mark")
        mark = _read(run_label, source, "/data/mark")
        blob = _sha256(run_label, source, "/data/blob")
        assert blob.split()[-1] == "262144"

        answer = await st.ask(MigrationAction.MIGRATE, MigrateWorkload(workload=WORKLOAD))

        assert answer.outcomes == {WORKLOAD: StageOutcome.MOVED}, answer.reasons
        assert answer.peers == {WORKLOAD: peer}
        await wait_for(lambda: st.where(WORKLOAD) == [peer], 120, "running on the peer only")
        assert _read(run_label, peer, "/data/mark") == mark  # the volume's content came along
        assert _sha256(run_label, peer, "/data/blob") == blob
        await wait_for(lambda: not _containers(run_label, source), 60, "the source removed")
        # the source's removal left the tenant's network to the peer's container
        assert _read(run_label, peer, "/data/mark") == mark
        await wait_for(lambda: bool(st.kinds(EventKind.MIGRATION_FINISHED)), 30, "the event")
        data = st.kinds(EventKind.MIGRATION_FINISHED)[0].payload_as(MigrationData)
        assert (data.trigger, data.from_, data.to, data.level) == ("by-hand", source, peer, 2)
        assert data.stateful
