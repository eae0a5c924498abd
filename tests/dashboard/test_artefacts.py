"""The dashboard's artefacts view in a real headless Chromium against ``fogmesh up``: a tenant
pushes a small ``.tar`` app from the page (chunks with their sha256, a progress bar and the
rate), sees it listed complete under the ref ``sha256sum`` gives, deploys it by ref from the apps
form and sees it cached at the site of the node that runs it; another tenant's login shows none
of its refs, neither in the store nor in any site's cache; the operator sees the ref at that
site with the tenant holding it. Screenshots go to the ``shots`` folder."""

from __future__ import annotations

import hashlib
import io
import tarfile

import pytest

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

    await _login(
        page, up_fleet.env["FOGMESH_TENANT_USERNAME"], up_fleet.env["FOGMESH_TENANT_PASSWORD"]
    )
    page.tab("artefacts")
    await eventually(lambda: "used" in page.text("#artefacts-quota"), DEADLINE, "the store's list")
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
