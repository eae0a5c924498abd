"""The dashboard's artefacts view in a real headless Chromium against ``fogmesh up``: a push of
a small ``.tar`` app cut off after its first chunk is listed partial with its offset; the tenant
pushes the file from the page (chunks with their sha256, a progress bar and the rate), which
goes on from the store's offset, and sees it listed complete under the ref ``sha256sum`` gives;
it deploys it by ref from the apps form and sees it cached at the site of the node that runs it;
another tenant's login shows none of its refs, neither in the store nor in any site's cache; the
operator sees the ref at that site with the tenant holding it. Screenshots go to ``shots``."""

from __future__ import annotations

import base64
import hashlib
import io
import tarfile

import pytest

from fogmesh.bus import Bus, BusConfig
from fogmesh.protocol import topics
from fogmesh.protocol.artefacts import (
    ARTEFACTS_RESOURCE,
    CHUNK_BYTES,
    ArtefactAction,
    ArtefactKind,
    PushChunk,
    PushStatus,
    chunk_digest,
)
from tests.dashboard.browser import Page
from tests.dashboard.conftest import OTHER_TENANT, UpFleet
from tests.support.buses import eventually

# one worker runs every test of the package: they share one fogmesh up fleet (package fixture)
pytestmark = pytest.mark.xdist_group("fogmesh-up-fleets")

DEADLINE = 90.0  # generous: two cores shared by the whole fleet and the browser
SCRIPT = "#!/bin/sh\ntrap 'exit 0' TERM\nwhile true; do sleep 1; done\n"


def _app_tar() -> bytes:
    """A native app of three chunks: ``run.sh`` and 300 KiB of payload."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data, mode in (
            ("run.sh", SCRIPT.encode(), 0o755),
            ("payload.bin", bytes(range(256)) * 1200, 0o644),
        ):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _manifest(ref: str) -> str:
    return f"""name: shop
version: "1"
components:
  - name: app
    runtime: native
    artefact: {{ref: "{ref}", command_script: run.sh}}
    command: [sh, run.sh]
    requests: {{cpu: 50m, memory: 32Mi}}
"""


async def _push_first_chunk(fleet: UpFleet, data: bytes) -> None:
    """A push cut off after its first chunk, as the tenant's own client (``fogmesh push``'s
    JSON commands): the store holds ``CHUNK_BYTES`` of it."""
    host, _, port = fleet.env["FOGMESH_BROKER"].rpartition(":")
    user = fleet.env["FOGMESH_TENANT_USERNAME"]
    config = BusConfig(
        host=host,
        port=int(port),
        client_id=f"{user}-cut-push",
        username=user,
        password=fleet.env["FOGMESH_TENANT_PASSWORD"],
    )
    first = data[:CHUNK_BYTES]
    async with Bus(config) as bus:
        await bus.wait_connected(timeout=30)
        status = await bus.request(
            topics.api(user, ARTEFACTS_RESOURCE, ArtefactAction.PUSH),
            PushChunk(
                name="shop.tar",
                kind=ArtefactKind.APP,
                size=len(data),
                sha256_total=hashlib.sha256(data).hexdigest(),
                data_b64=base64.b64encode(first).decode(),
                sha256=chunk_digest(first),
            ),
            PushStatus,
            timeout=30,
        )
    assert status.next_offset == CHUNK_BYTES


async def _login(page: Page, username: str, password: str, tenant: str = "") -> None:
    page.login(username, password, tenant)
    await eventually(lambda: page.text("#who") != "", DEADLINE, page.text("#login-error"))
    await eventually(lambda: len(page.attrs("#nodes-table tbody tr", "node")) == 3, DEADLINE)


def _cached(page: Page) -> list[tuple[str, str, str]]:
    """(site, ref, state) of each row of the caches table."""
    rows = page.js(
        "return [...document.querySelectorAll('#caches-table tbody tr')]"
        ".map(r => [r.dataset.site, r.dataset.ref, r.dataset.state]);"
    )
    return [(str(s), str(r), str(st)) for s, r, st in rows]


async def _caches_answered(page: Page, sites: int = 2) -> None:
    """Every site's cache answered (one summary line each, none an error)."""
    page.click("#artefacts-refresh")
    await eventually(
        lambda: len(page.attrs("#caches-summary li:not(.error)", "site")) == sites,
        DEADLINE,
        f"{sites} caches answering: {page.text('#caches-summary')}",
    )


async def test_a_tenant_pushes_from_the_page_and_sees_its_ref_cached_at_its_site(
    up_fleet: UpFleet, page: Page
) -> None:
    data = _app_tar()
    ref = f"sha256:{hashlib.sha256(data).hexdigest()}"
    tar = page.shots / "shop.tar"
    tar.write_bytes(data)

    await _push_first_chunk(up_fleet, data)  # a push cut off: the page lists it partial
    await _login(
        page, up_fleet.env["FOGMESH_TENANT_USERNAME"], up_fleet.env["FOGMESH_TENANT_PASSWORD"]
    )
    page.tab("artefacts")
    await eventually(
        lambda: page.attrs(f'#artefacts-table tr[data-ref="{ref}"]', "state") == ["partial"],
        DEADLINE,
        "the cut push listed partial",
    )
    assert f"offset {CHUNK_BYTES}" in page.text(f'#artefacts-table tr[data-ref="{ref}"]')
    page.shot("artefacts-partial")
    page.driver.find_element("css selector", "#artefact-file").send_keys(str(tar))
    page.js("document.querySelector('#artefact-kind').value = 'app'")
    page.click("#artefact-push")
    await eventually(
        lambda: "pushed shop.tar" in page.text("#artefact-result"),
        DEADLINE,
        f"the push: {page.text('#artefact-result')}",
    )
    assert page.attrs("#artefact-result", "ref") == [ref]  # the page's sha256 is the file's
    assert page.attrs("#artefact-progress", "done") == [str(len(data))]
    assert "/s" in page.text("#artefact-rate")
    # it went on from the store's offset: only the rest was sent
    assert page.attrs("#artefact-progress", "from") == [str(CHUNK_BYTES)]
    await eventually(
        lambda: page.attrs(f'#artefacts-table tr[data-ref="{ref}"]', "state") == ["complete"],
        DEADLINE,
        "listed complete",
    )
    assert "shop.tar" in page.text(f'#artefacts-table tr[data-ref="{ref}"]')
    # the CLI's list says the same
    listed = up_fleet.cli("artefacts", "list")
    assert listed.returncode == 0, listed.stderr
    assert ref.removeprefix("sha256:")[:12] in listed.stdout
    page.shot("artefacts-pushed")

    # deployed by ref from the apps form: the node's site's cache pulls it
    page.tab("apps")
    page.driver.find_element("css selector", "#manifest").send_keys(_manifest(ref))
    page.click("#deploy button[type=submit]")
    await eventually(lambda: "deployed shop" in page.text("#deploy-result"), DEADLINE, "deployed")
    page.tab("workloads")
    await eventually(lambda: page.phases().get("shop-app-0") == "running", DEADLINE, "running")
    node = page.js(
        "return document.querySelector('tr[data-workload=\"shop-app-0\"] td:nth-child(4)')"
        ".textContent"
    )
    site = page.text(f'#nodes-table tr[data-node="{node}"] td:nth-child(3)')
    assert site.startswith("site-"), site
    page.tab("artefacts")
    await _caches_answered(page)
    await eventually(lambda: (site, ref, "cached") in _cached(page), DEADLINE, f"cached at {site}")
    # a tenant's view names only itself as the holder
    row = f'#caches-table tr[data-site="{site}"][data-ref="{ref}"] td:nth-child(6)'
    assert page.text(row) == up_fleet.env["FOGMESH_TENANT_USERNAME"]
    page.shot("artefacts-cached")
    assert not [e for e in page.console_errors() if "favicon" not in e]

    # another tenant sees none of it: not in the store, not in any site's cache
    await _login(page, OTHER_TENANT, up_fleet.other_password)
    page.tab("artefacts")
    await eventually(lambda: "used" in page.text("#artefacts-quota"), DEADLINE, "its own list")
    await _caches_answered(page)
    assert page.attrs("#artefacts-table tbody tr", "ref") == []
    assert _cached(page) == []
    assert ref not in page.js("return document.body.innerHTML")
    page.shot("artefacts-other-tenant")

    # the operator sees the ref at that site, held by the tenant
    await _login(page, up_fleet.env["FOGMESH_USERNAME"], up_fleet.env["FOGMESH_PASSWORD"], "demo")
    page.tab("artefacts")
    await _caches_answered(page)
    await eventually(
        lambda: (site, ref, "cached") in _cached(page), DEADLINE, "the operator's view"
    )
    assert "demo" in page.text(row)
    page.shot("artefacts-operator")

    # leave the fleet as it was
    removed = up_fleet.cli("delete", "shop")
    assert removed.returncode == 0, removed.stderr
