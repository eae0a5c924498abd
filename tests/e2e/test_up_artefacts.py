"""A tenant of a ``fogmesh up`` fleet pushes a ``.tar`` app with ``fogmesh push``, deploys it by
ref, and it runs: the fleet starts the artefact store and each site's cache, the agents fetch
from their site's cache. The push's chunks stay off the sites (the WAN links carry tenants' API
requests up only), which a subscriber on a site broker checks."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import aiomqtt
import pytest
import yaml

from tests.e2e.fleet import OutputReader, leftovers, read_env, wait_for_file

FOGMESH = str(Path(sys.executable).parent / "fogmesh")
NODES = ["edge-1", "edge-2"]


def _app_tar() -> bytes:
    """A native app whose ``run.sh`` runs until stopped."""
    script = "#!/bin/sh\ntrap 'exit 0' TERM\nwhile true; do sleep 1; done\n"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data, mode in (
            ("run.sh", script.encode(), 0o755),
            ("payload.bin", os.urandom(400_000), 0o644),  # four chunks
        ):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [FOGMESH, "--timeout", "60", *args],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        env={**os.environ, **env},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


class SiteWatch:
    """Counts the tenant's artefact requests that reach a site broker (there should be none)."""

    def __init__(self) -> None:
        self.seen = 0
        self.ready = asyncio.Event()

    async def run(self, port: int, env: dict[str, str]) -> None:
        async with aiomqtt.Client(
            "127.0.0.1",
            port,
            username=env["FOGMESH_USERNAME"],
            password=env["FOGMESH_PASSWORD"],
            identifier="e2e-artefacts-site-watch",
        ) as client:
            await client.subscribe("fm/v1/api/+/artefacts/#", qos=1)
            self.ready.set()
            async for _message in client.messages:
                self.seen += 1


# a `fogmesh up` fleet of nodes edge-1..2: `leftovers` finds its processes by node name, so
# the fleets run one at a time
@pytest.mark.xdist_group("fogmesh-up-fleets")
@pytest.mark.timeout(420)
async def test_a_pushed_tar_app_deployed_by_ref_runs_under_fogmesh_up(tmp_path: Path) -> None:
    state = tmp_path / "fleet"
    argv = [FOGMESH, "up", "--nodes", "2", "--runtime", "native", "--state-dir", str(state)]
    fleet = subprocess.Popen(
        [*argv, "--no-live"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    out = OutputReader(fleet)
    watch = SiteWatch()
    watcher: asyncio.Task[None] | None = None
    try:
        await asyncio.to_thread(out.wait_for, "deployed sensor-app", 180, fleet)
        wait_for_file(state / "fleet.env", 10)
        env = read_env(state / "fleet.env")
        mesh = yaml.safe_load((state / "mesh.yaml").read_text())
        site_port = int(mesh["brokers"]["site-a"]["listeners"][0]["port"])
        watcher = asyncio.create_task(watch.run(site_port, env))
        await asyncio.wait_for(watch.ready.wait(), 30)

        tenant = {
            **env,
            "FOGMESH_USERNAME": env["FOGMESH_TENANT_USERNAME"],
            "FOGMESH_PASSWORD": env["FOGMESH_TENANT_PASSWORD"],
        }
        app = tmp_path / "shop.tar"
        app.write_bytes(_app_tar())
        ref = (await asyncio.to_thread(_cli, tenant, "push", str(app), "--kind", "app")).strip()
        assert ref.startswith("sha256:"), ref
        manifest = tmp_path / "shop.yaml"
        manifest.write_text(
            yaml.safe_dump(
                {
                    "name": "shop",
                    "components": [
                        {
                            "name": "shop",
                            "runtime": "native",
                            "artefact": {"ref": ref, "command_script": "run.sh"},
                            "command": ["sh", "run.sh"],
                            "replicas": 2,
                        }
                    ],
                }
            )
        )
        await asyncio.to_thread(_cli, tenant, "deploy", str(manifest))

        listed = ""
        deadline = time.monotonic() + 180  # both replicas fetched from their site's cache
        while listed.count("running") < 2:
            assert fleet.poll() is None, f"fogmesh up exited:\n{out.text()}"
            assert time.monotonic() < deadline, f"shop not running twice:\n{listed}"
            await asyncio.sleep(2)
            listed = await asyncio.to_thread(_cli, tenant, "workloads", "--app", "shop")
        # the tenant's push and deploy never reached the site broker (API requests go up only)
        assert watch.seen == 0

        fleet.send_signal(signal.SIGINT)  # Ctrl-C
        assert await asyncio.to_thread(fleet.wait, 120) == 0, out.text()
    finally:
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await watcher
        if fleet.poll() is None:  # a failure: Ctrl-C first, so its children go with it
            fleet.send_signal(signal.SIGINT)
            try:
                fleet.wait(60)
            except subprocess.TimeoutExpired:
                fleet.kill()
                fleet.wait()
    assert leftovers(state, NODES) == []
