"""The dashboard in a real headless Chromium against a fleet of ``fogmesh up``: a tenant's
login sees the nodes and the sample app, deploys from the form, follows its workload through
logs, stop, start and delete; a wrong field is shown at that field and nothing is deployed;
another tenant sees none of it; the sample app's output chart grows; a wrong password and an
unreachable broker (``fogmesh dashboard`` pointed at a
port nothing listens on) are sentences. Screenshots of each view go to the ``shots`` folder."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from tests.dashboard.browser import Page
from tests.dashboard.conftest import BIN, OTHER_TENANT, UpFleet
from tests.support.brokers import free_port
from tests.support.buses import eventually

# one worker runs every test of the package: they share one fogmesh up fleet (package fixture)
pytestmark = pytest.mark.xdist_group("fogmesh-up-fleets")

DEADLINE = 60.0  # generous: two cores shared by the whole fleet and the browser

_TICK = "import itertools, time\\nfor i in itertools.count(): print(f'tick {i}'); time.sleep(0.5)"
TICKER = f"""name: ticker
version: "1"
components:
  - name: tick
    runtime: native
    executable: {sys.executable}
    command: ["-u", "-c", "{_TICK}"]
    requests: {{cpu: 50m, memory: 32Mi}}
"""

BAD = """name: broken
version: "1"
components:
  - name: web
    runtime: native
    executable: /bin/true
    replicas: -3
"""


async def _login(page: Page, username: str, password: str, tenant: str = "") -> None:
    """Log in and wait until the page shows who it is (its subscriptions made)."""
    page.login(username, password, tenant)
    await eventually(lambda: page.text("#who") != "", DEADLINE, page.text("#login-error"))


async def _login_tenant(page: Page, fleet: UpFleet) -> None:
    await _login(page, fleet.env["FOGMESH_TENANT_USERNAME"], fleet.env["FOGMESH_TENANT_PASSWORD"])


async def _row_text(page: Page, selector: str, want: str) -> None:
    await eventually(lambda: want in page.text(selector), DEADLINE, f"{want!r} in {selector}")


async def _retried(attempt: Callable[[], Awaitable[None]], timeout: float) -> None:
    """Run ``attempt`` until it passes (an ``AssertionError`` or ``TimeoutError`` is a retry)."""
    async with asyncio.timeout(timeout):
        while True:
            try:
                return await attempt()
            except (AssertionError, TimeoutError):
                await asyncio.sleep(0.5)


async def test_tenant_sees_its_fleet_and_runs_an_app(up_fleet: UpFleet, page: Page) -> None:
    await _login_tenant(page, up_fleet)
    await eventually(
        lambda: page.attrs("#nodes-table tbody tr", "node") == ["edge-1", "edge-2", "edge-3"],
        DEADLINE,
        "three nodes",
    )
    await _row_text(page, "#nodes-table tbody", "online")
    page.shot("nodes")
    page.tab("apps")
    await eventually(lambda: "sensor-app" in page.attrs("#apps-table tbody tr", "app"), DEADLINE)

    # deploy from the form (pasted)
    page.driver.find_element("css selector", "#manifest").send_keys(TICKER)
    page.click("#deploy button[type=submit]")
    await _row_text(page, "#deploy-result", "deployed ticker")
    page.shot("apps")
    page.tab("workloads")
    workload = "ticker-tick-0"
    await eventually(lambda: page.phases().get(workload) == "running", DEADLINE, "running")

    # its logs show (as a person would, asked again while the app has printed nothing yet:
    # "running" can come before the first line, and one request shows the logs of that moment)
    async def logs_show() -> None:
        page.click(f'tr[data-workload="{workload}"] button.logs')
        await eventually(lambda: "tick " in page.text("#logs"), 3.0, "tick in #logs")

    await _retried(logs_show, DEADLINE)
    page.shot("workloads")

    # a file up into the workload, and the same file down again (into the shots folder)
    sent, greeting = page.shots / "greeting.txt", f"hello {workload}\n"
    sent.write_text(greeting)
    page.driver.find_element("css selector", "#upload-file").send_keys(str(sent))
    page.js("document.querySelector('#upload-path').value = '/greeting.txt'")
    page.click("#upload")
    await _row_text(page, "#banner", f"uploaded {len(greeting)} bytes")
    page.js("document.querySelector('#download-path').value = '/greeting.txt'")
    sent.unlink()
    page.click("#download")
    await _row_text(page, "#banner", f"downloaded {len(greeting)} bytes")
    await eventually(sent.exists, DEADLINE, "the downloaded file")
    await eventually(lambda: sent.read_text() == greeting, DEADLINE, "its content")

    page.click(f'tr[data-workload="{workload}"] button.stop')
    await eventually(lambda: page.phases().get(workload) == "stopped", DEADLINE, "stopped")
    page.click(f'tr[data-workload="{workload}"] button.start')
    await eventually(lambda: page.phases().get(workload) == "running", DEADLINE, "restarted")

    page.tab("events")
    await _row_text(page, "#events-table tbody", "ticker")
    page.shot("events")

    page.tab("apps")
    page.click('tr[data-app="ticker"] button.delete')
    await eventually(lambda: "ticker" not in page.attrs("#apps-table tbody tr", "app"), DEADLINE)
    page.tab("workloads")
    await eventually(lambda: workload not in page.phases(), DEADLINE, "workload removed")
    assert not [e for e in page.console_errors() if "favicon" not in e]


async def test_a_wrong_field_is_shown_there_and_nothing_deploys(
    up_fleet: UpFleet, page: Page, tmp_path: Path
) -> None:
    await _login_tenant(page, up_fleet)
    page.tab("apps")
    await eventually(lambda: "sensor-app" in page.attrs("#apps-table tbody tr", "app"), DEADLINE)
    manifest = tmp_path / "broken.yaml"
    manifest.write_text(BAD)
    page.driver.find_element("css selector", "#manifest-file").send_keys(str(manifest))
    await eventually(
        lambda: "replicas: -3" in page.js("return document.querySelector('#manifest').value"),
        DEADLINE,
    )
    page.click("#deploy button[type=submit]")
    await eventually(lambda: page.attrs("#field-errors li", "loc") != [], DEADLINE, "field errors")
    assert page.attrs("#field-errors li", "loc") == ["components.0.replicas"]
    # the failing line of the manifest carries the message
    assert page.attrs("#manifest-lines li.bad", "loc") == ["components.0.replicas"]
    assert "replicas: -3" in page.text("#manifest-lines li.bad")
    assert "invalid_payload" in page.text("#deploy-result")
    page.shot("deploy-error")
    # a refused action shows the reply's code and message
    page.driver.find_element("css selector", 'tr[data-app="sensor-app"] input.component').send_keys(
        "nope"
    )
    page.click('tr[data-app="sensor-app"] button.scale')
    await _row_text(page, "#banner", "scaling sensor-app: refused (")
    listed = up_fleet.cli("apps")
    assert listed.returncode == 0, listed.stderr
    assert "broken" not in listed.stdout


async def test_another_tenant_sees_nothing_of_the_first(up_fleet: UpFleet, page: Page) -> None:
    await _login(page, OTHER_TENANT, up_fleet.other_password)
    assert OTHER_TENANT in page.text("#who")
    await eventually(lambda: len(page.attrs("#nodes-table tbody tr", "node")) == 3, DEADLINE)
    page.tab("workloads")
    page.tab("apps")
    # the list replies came (the nodes did), and the other tenant's rows are not among them
    await eventually(lambda: "apps" not in page.text("#banner"), DEADLINE)
    assert page.attrs("#apps-table tbody tr", "app") == []
    assert page.phases() == {}
    page.tab("output")
    assert page.attrs("#stream option", "x") == []
    assert "sensor-app" not in page.js("return document.body.innerText")
    page.shot("other-tenant")


async def test_the_output_chart_grows(up_fleet: UpFleet, page: Page) -> None:
    await _login_tenant(page, up_fleet)
    page.tab("output")

    def points() -> int:
        return int(page.js("return Number(document.querySelector('#chart').dataset.points)"))

    await eventually(lambda: points() >= 2, DEADLINE, "two outputs charted")
    assert page.js("return document.querySelector('#stream').value").endswith("/sensor-app/out")
    assert page.js("return document.querySelector('#field').value") == "result.mean"
    first = points()
    await eventually(lambda: points() > first, DEADLINE, "the chart grows")
    page.shot("output")


async def test_errors_a_person_can_act_on(up_fleet: UpFleet, page: Page, shots: Path) -> None:
    page.login(up_fleet.env["FOGMESH_TENANT_USERNAME"], "not-the-password")
    await _row_text(page, "#login-error", "wrong username or password")
    # a dashboard whose broker is down
    port, dead = free_port(), free_port()
    proc = subprocess.Popen(
        [str(BIN / "fogmesh"), "--broker", f"127.0.0.1:{dead}", "dashboard",
         "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        assert "dashboard: http" in proc.stdout.readline()
        lonely = Page(f"http://127.0.0.1:{port}/", shots)
        try:
            lonely.login("demo", "whatever")
            await _row_text(lonely, "#login-error", "cannot reach the broker")
        finally:
            lonely.close()
    finally:
        proc.terminate()
        assert proc.wait(timeout=20) == 0  # SIGTERM: a clean stop


async def test_the_operator_sees_the_fleet_live(up_fleet: UpFleet, page: Page) -> None:
    await _login(page, up_fleet.env["FOGMESH_USERNAME"], up_fleet.env["FOGMESH_PASSWORD"], "demo")
    assert "(fleet view)" in page.text("#who")  # the broker granted the nodes' channels
    await _row_text(page, "#nodes-mode", "heartbeat")
    await eventually(lambda: len(page.attrs("#nodes-table tbody tr", "node")) == 3, DEADLINE)
    # heartbeats keep coming: each node's CPU chart gains points
    await eventually(
        lambda: all(int(n) >= 2 for n in page.attrs("#nodes-table canvas.spark", "points")),
        DEADLINE,
        "two heartbeats charted per node",
    )
    page.tab("apps")
    await eventually(lambda: "sensor-app" in page.attrs("#apps-table tbody tr", "app"), DEADLINE)
    page.tab("nodes")
    page.shot("operator")
