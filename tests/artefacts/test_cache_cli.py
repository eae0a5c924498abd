"""``fogmesh artefacts cache --site S`` as a user runs it (the CLI as a child process against
the cloud broker of a cloud + site fleet, the store and the site's cache): a tenant's own
account sees its own refs at that site through the store, another tenant none of them, an
operator every ref with its tenants (or one tenant's with ``--tenant``); a site with no cache is
one sentence and an exit code, never a traceback (docs/artefacts.md, "What a cache holds")."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from fogmesh.bus import Bus
from fogmesh.protocol import topics
from fogmesh.protocol.artefacts import FETCH_VERB, FetchArtefact, FetchReady, cache_duty
from tests.artefacts.conftest import (
    NODES,
    OTHER,
    SITE,
    TENANT,
    Fleet,
    app_tar,
    app_workload,
    desire,
    node_bus,
)
from tests.support.mesh_file import PASSWORDS


def _cli(
    fleet: Fleet, user: str, *args: str, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """``fogmesh --timeout T ARGS`` as ``user`` (a tenant's own account, or ``svc``)."""
    env = {**os.environ, "FOGMESH_BROKER": f"127.0.0.1:{fleet.cloud_port}", "COLUMNS": "200"}
    env |= {"FOGMESH_USERNAME": user, "FOGMESH_PASSWORD": PASSWORDS[user]}
    env["FOGMESH_TENANT"] = user if user in (TENANT, OTHER) else TENANT
    command = [sys.executable, "-m", "fogmesh.cli", "--timeout", f"{timeout:g}", *args]
    return subprocess.run(
        command, capture_output=True, text=True, env=env, timeout=180, check=False
    )


async def cli(
    fleet: Fleet, user: str, *args: str, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(_cli, fleet, user, *args, timeout=timeout)


async def _fetched_at_the_site(fleet: Fleet, site_bus: Bus, ref: str, size: int) -> None:
    """A node of the site is given a workload naming ``ref`` and asks the site's cache for it,
    as its agent does: the cache pulls it from the store."""
    node = NODES[0]
    await desire(site_bus, node, 1, app_workload("shop-app-0", ref))
    config = node_bus(fleet.site_port, node)
    async with Bus(config) as asking:
        await asking.wait_connected(timeout=20)
        ready = await asking.request(
            topics.ops(cache_duty(SITE), FETCH_VERB),
            FetchArtefact(ref=ref, tenant=TENANT, node=node),
            FetchReady,
            timeout=60,
        )
    assert ready.size == size


async def test_artefacts_cache_shows_what_a_site_holds(
    fleet: Fleet, site_bus: Bus, tmp_path: Path
) -> None:
    tar = tmp_path / "shop.tar"
    tar.write_bytes(app_tar(200 << 10))
    pushed = await cli(fleet, TENANT, "push", str(tar), "--kind", "app", "--quiet")
    assert pushed.returncode == 0, pushed.stderr[-2000:]
    ref = pushed.stdout.strip()
    await _fetched_at_the_site(fleet, site_bus, ref, tar.stat().st_size)

    # the tenant, through the store: its ref at the site, as a table and as JSON (the store
    # answers "unavailable" until the WAN link carries the cache's answer: asked again)
    for _ in range(6):
        mine = await cli(fleet, TENANT, "artefacts", "cache", "--site", SITE)
        if "unavailable" not in mine.stderr:
            break
    assert mine.returncode == 0, mine.stderr[-2000:]
    assert f"cache of {SITE}" in mine.stdout
    row = next(line for line in mine.stdout.splitlines() if ref in line)
    for shown in ("shop.tar", "app", "cached", TENANT):
        assert shown in row, row
    assert "1 cached" in mine.stdout

    as_json = await cli(fleet, TENANT, "artefacts", "cache", "--site", SITE, "-o", "json")
    assert as_json.returncode == 0, as_json.stderr[-2000:]
    status = json.loads(as_json.stdout)  # valid jq input: the reply, not its envelope
    assert set(status) == {"site", "artefacts", "pulls", "used_bytes", "max_bytes"}
    assert status["site"] == SITE
    assert [(a["ref"], a["tenants"], a["size"]) for a in status["artefacts"]] == [
        (ref, [TENANT], tar.stat().st_size)
    ]
    assert status["used_bytes"] == tar.stat().st_size

    # another tenant sees none of it
    theirs = await cli(fleet, OTHER, "artefacts", "cache", "--site", SITE, "--json")
    assert theirs.returncode == 0, theirs.stderr[-2000:]
    assert json.loads(theirs.stdout)["artefacts"] == []
    assert ref not in theirs.stdout

    # an operator asks the cache itself: every ref with its tenants; --tenant narrows it
    everything = await cli(fleet, "svc", "artefacts", "cache", "--site", SITE, "-o", "yaml")
    assert everything.returncode == 0, everything.stderr[-2000:]
    held = yaml.safe_load(everything.stdout)
    assert [(a["ref"], a["tenants"]) for a in held["artefacts"]] == [(ref, [TENANT])]
    assert held["max_bytes"] == fleet.cache.config.max_bytes
    narrowed = await cli(
        fleet, "svc", "artefacts", "cache", "--site", SITE, "--tenant", OTHER, "--json"
    )
    assert narrowed.returncode == 0, narrowed.stderr[-2000:]
    assert json.loads(narrowed.stdout)["artefacts"] == []


async def test_artefacts_cache_errors_are_sentences(fleet: Fleet) -> None:
    # an operator asking a site with no cache: nobody answers
    silent = await cli(fleet, "svc", "artefacts", "cache", "--site", "site-nowhere", timeout=2)
    assert silent.returncode == 4, silent.stderr[-2000:]
    assert "the cache of site-nowhere did not answer" in silent.stderr
    assert silent.stdout == ""
    assert "Traceback" not in silent.stderr

    # a tenant: the store answers that the site's cache does not answer
    refused = await cli(fleet, TENANT, "artefacts", "cache", "--site", "site-nowhere")
    assert refused.returncode == 5, refused.stderr[-2000:]
    assert "refused (unavailable)" in refused.stderr
    assert refused.stdout == ""

    # a tenant's own account may not ask for another tenant's refs
    other = await cli(fleet, TENANT, "artefacts", "cache", "--site", SITE, "--tenant", OTHER)
    assert other.returncode == 2, other.stderr[-2000:]
    assert "only its own refs" in other.stderr
