"""deploy/systemd and deploy/agent/install.sh: the units pass ``systemd-analyze verify``, and an
agent installed by the script joins a real site broker with a bootstrap token.

The agent runs as its unit's ExecStart says (with the install root in front of the paths) and
with the unit's EnvironmentFile; systemd itself is not running here, so ``systemctl`` is not.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fogmesh.agent.join import CREDENTIAL_FILE
from fogmesh.bus import Bus, BusConfig, MessageContext
from fogmesh.protocol import topics
from fogmesh.protocol.node import NodeLiveness, NodeStateMessage
from tests.scheduler.harness import wait_for
from tests.security.conftest import fogmesh
from tests.support.brokers import REPO
from tests.support.mesh import MeshProcess, start_alone
from tests.support.mesh_file import PASSWORDS

DEPLOY = REPO / "deploy"
INSTALL = DEPLOY / "agent" / "install.sh"
UNITS = ("fogmesh-agent.service", "fogmesh-site-broker.service")


def _install(root: Path, *args: str) -> None:
    subprocess.run(
        ["sh", str(INSTALL), "--root", str(root), "--python", sys.executable, *args],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip


def _exec_start(unit: Path, root: Path) -> list[str]:
    """The unit's ExecStart, its absolute paths moved under ``root``."""
    line = next(x for x in unit.read_text().splitlines() if x.startswith("ExecStart="))
    argv = shlex.split(line.removeprefix("ExecStart="))
    return [str(root) + a if a.startswith(("/opt/", "/etc/")) else a for a in argv]


def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.fail("systemd-analyze is missing; .ci/compose.sh installs systemd")
    root = tmp_path / "root"
    # the unit's dependencies (sysinit.target, network-online.target ...) from the host
    shutil.copytree("/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    _install(root, "--token", "t1.s1", "--broker-host", "site-a", "--no-start")
    (root / "opt/fogmesh/bin/fogmesh-broker").write_text("#!/bin/sh\n")
    (root / "opt/fogmesh/bin/fogmesh-broker").chmod(0o755)
    shutil.copy(DEPLOY / "systemd" / UNITS[1], root / "etc/systemd/system" / UNITS[1])
    for unit in UNITS:  # the installed copy is the repo's
        assert (root / "etc/systemd/system" / unit).read_text() == (
            DEPLOY / "systemd" / unit
        ).read_text()
    done = subprocess.run(
        [analyze, "verify", "--man=no", f"--root={root}", *UNITS],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    # verify exits 0 on unknown keys and bad values, it only warns: nothing may be said
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


async def test_installed_agent_joins_with_a_token(tmp_path: Path, procs: list[MeshProcess]) -> None:
    port = start_alone(tmp_path, procs, "site")[1]
    token = fogmesh(port, "node", "token", "--node", "edge-7").strip()
    root, state = tmp_path / "root", tmp_path / "state"
    _install(
        root, "--token", token, "--broker-host", "127.0.0.1", "--broker-port", str(port),
        "--site", "site-a", "--runtimes", "native", "--state-dir", str(state), "--no-start",
    )  # fmt: skip
    env_file = root / "etc/fogmesh/agent.env"
    assert oct(env_file.stat().st_mode & 0o777) == "0o600"
    env = dict(os.environ)
    for line in env_file.read_text().splitlines():
        key, _, value = line.partition("=")
        env[key] = value
    argv = _exec_start(root / "etc/systemd/system/fogmesh-agent.service", root)
    online: list[NodeStateMessage] = []

    async def on_state(msg: NodeStateMessage, ctx: MessageContext) -> None:
        if msg.state is NodeLiveness.ONLINE:
            online.append(msg)

    log = (tmp_path / "agent.log").open("wb")
    agent = subprocess.Popen(argv, env=env, stdout=log, stderr=log)
    try:
        config = BusConfig(port=port, client_id="watch", username="svc", password=PASSWORDS["svc"])
        async with Bus(config) as bus:
            bus.subscribe(topics.node("edge-7", "state"), NodeStateMessage, on_state)
            await wait_for(lambda: bool(online), "the installed agent's node online", 60)
        assert (state / CREDENTIAL_FILE).exists()
        assert token.partition(".")[2] not in (state / CREDENTIAL_FILE).read_text()
    finally:
        agent.terminate()
        await asyncio.to_thread(agent.wait, 30)


def test_installed_labels_keep_the_install_marker(tmp_path: Path) -> None:
    """The settings file is JSON (read without PyYAML); a duplicate key's last value wins, so
    the marker goes last: no ``--label`` overrides it, as with the YAML file before."""
    from fogmesh.agent.config import load_config

    root = tmp_path / "root"
    _install(
        root, "--token", "a.b", "--broker-host", "h", "--site", "s1", "--no-start",
        "--label", "fogmesh.install=mine", "--label", "tier=edge",
    )  # fmt: skip
    labels = load_config(root / "etc/fogmesh/agent.yaml").labels
    assert labels == {"site": "s1", "tier": "edge", "fogmesh.install": "agent"}
