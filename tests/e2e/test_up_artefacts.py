"""A tenant of a ``fogmesh up`` fleet pushes a ``.tar`` app with ``fogmesh push``, deploys it by
ref, and it runs: the fleet starts the artefact store and each site's cache, the agents fetch
from their site's cache. The push's chunks stay off the sites (the WAN links carry tenants' API
requests up only), which a subscriber on a site broker checks."""

from __future__ import annotations

import asyncio
import io
import os
import tarfile
import time
from pathlib import Path

import pytest
import yaml

from tests.e2e.fleet import fleet_client, fleet_ok, fogmesh_up, leftovers

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
    return fleet_ok(env, "--timeout", "60", *args, timeout=180)


class SiteWatch:
    """Counts the tenant's artefact requests that reach a site broker (there should be none)."""

    def __init__(self) -> None:
        self.seen = 0
        self.ready = asyncio.Event()

    async def run(self, port: int, env: dict[str, str]) -> None:
        async with fleet_client(env, "e2e-artefacts-site-watch", port) as client:
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
    watch = SiteWatch()
    async with fogmesh_up(state, "--nodes", "2", "--runtime", "native") as fleet:
        env = await asyncio.to_thread(fleet.deployed)
        mesh = yaml.safe_load((state / "mesh.yaml").read_text())
        site_port = int(mesh["brokers"]["site-a"]["listeners"][0]["port"])
        fleet.background(watch.run(site_port, env))
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
            assert fleet.proc.poll() is None, f"fogmesh up exited:\n{fleet.text()}"
            assert time.monotonic() < deadline, f"shop not running twice:\n{listed}"
            await asyncio.sleep(2)
            listed = await asyncio.to_thread(_cli, tenant, "workloads", "--app", "shop")
        # the tenant's push and deploy never reached the site broker (API requests go up only)
        assert watch.seen == 0

        await fleet.ctrl_c(alive=False)  # Ctrl-C
    assert leftovers(state, NODES) == []
