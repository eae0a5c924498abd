"""Headless Chromium (Debian's ``chromium`` and ``chromium-driver``) driven by Selenium, and
the few page reads the dashboard tests share. Reads go through one script each, so a table
re-rendered by a push between two calls never leaves a stale element behind."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import pytest

__all__ = ["CHROMEDRIVER", "CHROMIUM", "Page", "chromium_missing", "skip_without_chromium"]

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def chromium_missing() -> str | None:
    """Why the browser tests cannot run here (``bash .ci/dashboard.sh`` installs it all)."""
    if not Path(CHROMIUM).exists() or shutil.which("chromedriver") is None:
        return "no Debian chromium / chromium-driver (bash .ci/dashboard.sh)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "no selenium in the venv (bash .ci/dashboard.sh)"
    from fogmesh.dashboard import missing_assets

    if missing := missing_assets():
        return f"dashboard assets missing: {', '.join(missing)} (bash .ci/dashboard.sh)"
    return None


class Page:
    """One headless Chromium on the dashboard."""

    def __init__(self, url: str, shots: Path) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                    "--window-size=1280,900", "--disable-gpu"):  # fmt: skip
            options.add_argument(arg)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        # a download from the page lands beside the screenshots, with no prompt
        prefs = {"download.default_directory": str(shots), "download.prompt_for_download": False}
        options.add_experimental_option("prefs", prefs)
        # the driver of Debian's package, never one Selenium Manager would download
        self.driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        self.driver.set_page_load_timeout(30)
        self.driver.set_script_timeout(30)
        self.url = url
        self.shots = shots

    def close(self) -> None:
        self.driver.quit()

    def js(self, script: str, *args: Any) -> Any:
        return self.driver.execute_script(script, *args)  # type: ignore[no-untyped-call]

    def open(self) -> None:
        """A fresh page: nothing of the last login is left."""
        self.driver.get(self.url)

    def login(self, username: str, password: str, tenant: str = "") -> None:
        from selenium.webdriver.common.by import By

        self.open()
        self.driver.find_element(By.NAME, "username").send_keys(username)
        self.driver.find_element(By.NAME, "password").send_keys(password)
        if tenant:
            self.driver.find_element(By.NAME, "tenant").send_keys(tenant)
        self.driver.find_element(By.CSS_SELECTOR, "#login button[type=submit]").click()

    def text(self, selector: str) -> str:
        return str(
            self.js(
                "const e = document.querySelector(arguments[0]); return e ? e.textContent : '';",
                selector,
            )
        )

    def attrs(self, selector: str, name: str) -> list[str]:
        """``data-{name}`` of every element matching ``selector``."""
        script = (
            "return [...document.querySelectorAll(arguments[0])].map(e => e.dataset[arguments[1]]);"
        )
        return [str(v) for v in self.js(script, selector, name)]

    def phases(self) -> dict[str, str]:
        rows = "[...document.querySelectorAll('#workloads-table tbody tr')]"
        script = (
            f"return Object.fromEntries({rows}.map(r => [r.dataset.workload, r.dataset.phase]));"
        )
        return {str(k): str(v) for k, v in self.js(script).items()}

    def click(self, selector: str) -> None:
        """Click the element now matching ``selector``; a push may re-render it between the
        find and the click, so a stale one is found again (a few times)."""
        from selenium.common.exceptions import StaleElementReferenceException
        from selenium.webdriver.common.by import By

        for _ in range(20):
            try:
                self.driver.find_element(By.CSS_SELECTOR, selector).click()
            except StaleElementReferenceException:
                time.sleep(0.1)
            else:
                return
        self.driver.find_element(By.CSS_SELECTOR, selector).click()

    def tab(self, view: str) -> None:
        self.click(f"#tabs button[data-view={view}]")

    def shot(self, name: str) -> Path:
        path = self.shots / f"{name}.png"
        self.driver.save_screenshot(str(path))
        return path

    def console_errors(self) -> list[str]:
        logs = self.driver.get_log("browser")  # type: ignore[no-untyped-call]
        return [e["message"] for e in logs if e["level"] == "SEVERE"]


def skip_without_chromium() -> pytest.MarkDecorator:
    """A mark that skips a module when the browser or the page's assets are missing."""
    reason = chromium_missing()
    return pytest.mark.skipif(reason is not None, reason=reason or "")
