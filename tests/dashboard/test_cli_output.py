"""The CLI for scripts against ``fogmesh up``'s fleet: ``fogmesh nodes|apps|workloads|events
-o json`` parse as JSON (the replies' own models) and match the table's rows, ``-o yaml`` holds
the same, and ``--watch`` prints again when the view changes, pushed by the tenant's events.

The listings run the CLI's app in this process (typer's runner; a Python start per command
costs seconds on a busy machine); the watch runs as its own process."""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml
from rich.console import Console
from typer.testing import CliRunner

from tests.dashboard.conftest import BIN, UpFleet
from tests.support.buses import eventually

cli_main = importlib.import_module("fogmesh.cli.main")  # fogmesh.cli.main is also a function
cli_context = importlib.import_module("fogmesh.cli.context")  # the consoles commands print on
# one worker runs every test of the package: they share one fogmesh up fleet (package fixture)
pytestmark = pytest.mark.xdist_group("fogmesh-up-fleets")

DEADLINE = 60.0
LISTINGS = {"nodes": "node", "apps": "name", "workloads": "name", "events": "kind"}
"""Each listing command and the field of its JSON that the table's first column shows."""

HELLO = """\
name: hello
components:
  - name: greeter
    runtime: native
    executable: /bin/sh
    command: ["-c", "sleep 600"]
    requests: {cpu: 50m, memory: 16Mi}
"""


def _table_rows(text: str, column: int) -> list[str]:
    """One cell of each body row of a rich table."""
    rows = []
    for line in text.splitlines():
        if line.lstrip().startswith("│"):
            cells = [c.strip() for c in line.strip().strip("│").split("│")]
            if cells[0]:  # a wrapped cell's continuation line has an empty first cell
                rows.append(cells[column])
    return rows


@pytest.fixture
def fogmesh(up_fleet: UpFleet, monkeypatch: pytest.MonkeyPatch) -> Any:
    """``fogmesh ARGS`` as the fleet's tenant, in this process: (exit code, stdout)."""
    for key, value in up_fleet.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("FOGMESH_USERNAME", up_fleet.env["FOGMESH_TENANT_USERNAME"])
    monkeypatch.setenv("FOGMESH_PASSWORD", up_fleet.env["FOGMESH_TENANT_PASSWORD"])
    monkeypatch.setattr(cli_context, "out", Console(width=400))  # rich wraps no cell

    def run(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(cli_main.app, ["--timeout", "30", *args])
        assert result.exception is None or isinstance(result.exception, SystemExit), result
        return result.exit_code, result.stdout

    return run


def _json(done: tuple[int, str]) -> list[dict[str, Any]]:
    code, text = done
    assert code == 0, text
    parsed = json.loads(text)
    assert isinstance(parsed, list)
    return parsed


def test_listings_as_json_and_yaml_match_the_tables(fogmesh: Any) -> None:
    for command, key in LISTINGS.items():
        as_json = _json(fogmesh(command, "-o", "json"))
        assert as_json, f"{command} listed nothing"
        code, table = fogmesh(command)
        assert code == 0, table
        want = [str(item[key]) for item in as_json]
        rows = _table_rows(table, 1 if command == "events" else 0)
        if command == "events":  # events go on (a node turning stale): the later list holds more
            assert rows[: len(want)] == want, table
        else:
            assert rows == want, table
        code, as_yaml = fogmesh(command, "-o", "yaml")
        assert code == 0, as_yaml
        assert [str(i[key]) for i in yaml.safe_load(as_yaml)][: len(want)] == want
    nodes = _json(fogmesh("nodes", "--json"))
    assert [n["node"] for n in nodes] == ["edge-1", "edge-2", "edge-3"]
    assert all(n["facts"]["arch"] for n in nodes)  # the reply's own model, whole


class _Watch:
    """``fogmesh ... --watch`` running as the tenant, its stdout read in a thread."""

    def __init__(self, fleet: UpFleet, *args: str) -> None:
        env = {**os.environ, **fleet.env}
        env["FOGMESH_USERNAME"] = fleet.env["FOGMESH_TENANT_USERNAME"]
        env["FOGMESH_PASSWORD"] = fleet.env["FOGMESH_TENANT_PASSWORD"]
        self.proc = subprocess.Popen(
            [str(BIN / "fogmesh"), "--timeout", "30", *args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        )  # fmt: skip
        self.text = ""
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.text += line

    def names(self) -> list[list[str]]:
        """The app names of every complete JSON array printed so far."""
        decoder, found, at = json.JSONDecoder(), [], 0
        text = self.text
        while (start := text.find("[", at)) >= 0:
            try:
                value, at = decoder.raw_decode(text, start)
            except ValueError:
                break
            found.append(sorted(a["name"] for a in value))
        return found

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


async def test_watch_prints_again_when_the_view_changes(
    up_fleet: UpFleet, fogmesh: Any, tmp_path: Path
) -> None:
    watch = _Watch(up_fleet, "apps", "-o", "json", "--watch")
    try:
        await eventually(lambda: ["sensor-app"] in watch.names(), DEADLINE, watch.text)
        manifest = tmp_path / "hello.yaml"
        manifest.write_text(HELLO)
        code, text = await asyncio.to_thread(fogmesh, "deploy", str(manifest))
        assert code == 0, text
        await eventually(lambda: ["hello", "sensor-app"] in watch.names(), DEADLINE, watch.text)
        code, text = await asyncio.to_thread(fogmesh, "delete", "hello")
        assert code == 0, text
        await eventually(lambda: watch.names()[-1] == ["sensor-app"], DEADLINE, watch.text)
        assert watch.proc.poll() is None  # it watches until stopped
    finally:
        watch.stop()
