"""What a running agent has imported (docs/agent.md, "Memory"): never ``rich`` nor ``socks``
(structlog and paho would load them merely because they are installed), no Docker client when
only the native runtime is configured (neither aiodocker nor the agent's own engine client), no
mDNS without discovery, none of the contract's app manifest and registry queries, no join
contract without a token, no device reader without device streams; and, while it runs no
workload, neither psutil (the native runtime's process statistics), ``tarfile`` (snapshots,
container files, artefacts), the artefact contract (fetches, loaded images), the event
contract (phase changes, rejections, lost devices) nor the migration contract (the migrator's
verbs, trouble). A settings file in JSON syntax is read
without PyYAML.

The agent runs as ``python -m fogmesh.agent`` does (its ``__main__`` module, through runpy),
connected to a real broker; when it has stopped on SIGTERM, an exit hook writes the names of
its loaded modules. No timing and no memory figure is asserted here (those are in
``bench/agent.py``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from subprocess import CompletedProcess

import pytest

from fogmesh.protocol import NodeHello, topics
from tests.agent.support import Probe, wait_for
from tests.support.brokers import REPO, BrokerProcess
from tests.support.buses import unique

RUN_AND_LIST = """
import atexit, json, runpy, sys
out, argv = sys.argv[1], sys.argv[2:]
atexit.register(
    lambda: open(out, "w").write(
        json.dumps(
            sorted(
                n for n, m in sys.modules.items()
                if m is not None and type(m).__name__ != "_StandIn"  # deferred, never used
            )
        )
    )
)
sys.argv = ["fogmesh-agent", *argv]
runpy.run_module("fogmesh.agent", run_name="__main__", alter_sys=True)
"""


async def _modules_of_agent(
    broker: BrokerProcess, probe: Probe, tmp_path: Path, runtimes: str
) -> set[str]:
    node = unique("imp")
    hellos: list[NodeHello] = probe.watch(topics.node(node, "hello"), NodeHello)
    listing = tmp_path / "modules.json"
    log = (tmp_path / "agent.log").open("wb")
    agent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            RUN_AND_LIST,
            str(listing),
            "--node-id",
            node,
            "--broker-port",
            str(broker.port),
            "--state-dir",
            str(tmp_path / "state"),
            "--runtimes",
            runtimes,
            "--log-level",
            "warning",
        ],
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    try:
        await wait_for(lambda: bool(hellos), what="the agent's hello")
    finally:
        agent.send_signal(signal.SIGTERM)
        try:
            agent.wait(timeout=30)
        except subprocess.TimeoutExpired:
            agent.kill()
            agent.wait()
    assert listing.exists(), (tmp_path / "agent.log").read_text()[-2000:]
    return set(json.loads(listing.read_text()))


NEVER = {"rich", "socks", "zeroconf", "fogmesh.protocol.manifest", "fogmesh.protocol.queries"}
IDLE = {
    "psutil",
    "tarfile",
    "fogmesh.protocol.artefacts",
    "fogmesh.protocol.events",
    "fogmesh.protocol.migration",
    "fogmesh.agent.transfer",
    # the standard library's modules of fogmesh.agent.deferred.DEFERRED and what they load
    "urllib.request",
    "http.client",
    "email.message",
    "importlib.metadata",
    "zipfile",
    "csv",
    "bz2",
    "lzma",
}
"""Loaded on first use by what an idle agent does not do."""
UNCONFIGURED = {
    "fogmesh.agent.discovery",
    "fogmesh.agent.device_reader",
    "fogmesh.protocol.accounts",
}
"""Loaded only with discovery, device streams, a join token to redeem."""
CASES = {  # --runtimes: (modules it must not load, modules it must load)
    "native": (
        NEVER
        | IDLE
        | UNCONFIGURED
        | {"aiodocker", "aiohttp", "fogmesh.agent.runtime.engine._client"},
        {"fogmesh.agent.runtime.native"},
    ),
    "docker,native": (NEVER | IDLE | UNCONFIGURED, {"fogmesh.agent.runtime.docker"}),
}


@pytest.mark.parametrize("runtimes", sorted(CASES))
async def test_agent_imports_only_what_its_configuration_uses(
    broker: BrokerProcess, probe: Probe, tmp_path: Path, runtimes: str
) -> None:
    """A connected agent has loaded its service and runtimes, structlog, and nothing listed as
    absent for its configuration."""
    absent, present = CASES[runtimes]
    modules = await _modules_of_agent(broker, probe, tmp_path, runtimes)
    assert {"fogmesh.agent.service", "structlog", *present} <= modules
    assert not (absent & modules), sorted(absent & modules)


def run_python(script: str, *args: str, env: dict[str, str] | None = None) -> CompletedProcess[str]:
    """Run ``script`` in a fresh interpreter from the repository (this one has loaded far more
    than an agent); fails on a non-zero exit."""
    return subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        check=True,
        timeout=60,
    )


PLUGINS_AFTER_START = """
import os, sys
from fogmesh.agent.cli import keep_out_unused_extras
keep_out_unused_extras()
from pydantic import BaseModel
from pydantic.plugin import _loader

class One(BaseModel):
    x: int = 0

One()
print(os.environ.get("PYDANTIC_DISABLE_PLUGINS"), _loader._plugins is None)
"""


@pytest.mark.parametrize(
    ("preset", "expected"),
    [(None, "__all__ True"), ("", " False")],  # scanned: the loader's table is a dict
)
def test_the_entry_point_turns_pydantic_plugins_off_unless_told(
    preset: str | None, expected: str
) -> None:
    """No entry-point scan for pydantic plugins in the agent's process; an operator's own
    setting of the switch (empty: plugins on) is kept."""
    env = {k: v for k, v in os.environ.items() if k != "PYDANTIC_DISABLE_PLUGINS"}
    if preset is not None:
        env["PYDANTIC_DISABLE_PLUGINS"] = preset
    done = run_python(PLUGINS_AFTER_START, env=env)
    assert done.stdout.rstrip("\n") == expected


USE_THE_DEFERRED = """
import importlib, io, sys
from fogmesh.agent.cli import keep_out_unused_extras
from fogmesh.agent.deferred import DEFERRED, is_deferred
keep_out_unused_extras()
import paho.mqtt.client, pydantic, shutil, tarfile

class One(pydantic.BaseModel):
    x: int = 0

One()
print(all(is_deferred(m) for m in DEFERRED), "bztar" in dict(shutil.get_archive_formats()))
from urllib.request import urlopen
from importlib.metadata import entry_points
print(callable(urlopen), list(entry_points(group="fogmesh.none")))
print(importlib.metadata.version("pydantic") == pydantic.VERSION)
for compression in ("bz2", "xz"):
    packed = io.BytesIO()
    with tarfile.open(fileobj=packed, mode=f"w:{compression}") as tar:
        tar.addfile(tarfile.TarInfo(compression))
    packed.seek(0)
    with tarfile.open(fileobj=packed) as tar:
        print(tar.getnames())
print([not is_deferred(m) and sys.modules[m] is importlib.import_module(m) for m in DEFERRED])
"""


def test_a_deferred_module_is_whole_at_its_first_use() -> None:
    """The entry point leaves ``urllib.request``, ``importlib.metadata``, ``bz2`` and ``lzma``
    unloaded through paho's, pydantic's and shutil's imports; the first use of each (by name,
    by a function imported before, by an archive) loads the real module."""
    done = run_python(
        USE_THE_DEFERRED,
        env={k: v for k, v in os.environ.items() if k != "PYDANTIC_DISABLE_PLUGINS"},
    )
    assert done.stdout.splitlines() == [
        "True True",
        "True []",
        "True",
        "['bz2']",
        "['xz']",
        "[True, True, True, True]",
    ]


FIRST_USE_FROM_THREADS = """
import sys, threading
from fogmesh.agent.cli import keep_out_unused_extras
keep_out_unused_extras()
import urllib.request
stand_in, start, got, failed = urllib.request, threading.Barrier(16), [], []

def use():
    start.wait()
    try:
        got.append(stand_in.urlopen)
    except Exception as exc:
        failed.append(repr(exc))

threads = [threading.Thread(target=use) for _ in range(16)]
for t in threads:
    t.start()
for t in threads:
    t.join()
real = sys.modules["urllib.request"]
print(failed, len(got), all(f is real.urlopen for f in got), real is not stand_in)
"""


@pytest.mark.parametrize("attempt", range(3))
def test_a_deferred_module_used_first_by_many_threads_is_imported_once(attempt: int) -> None:
    """Sixteen threads reaching through the stand-in at once all get the one real module."""
    done = run_python(FIRST_USE_FROM_THREADS)
    assert done.stdout.strip() == "[] 16 True True", (attempt, done.stderr[-2000:])


SPECS_OF_THE_DEFERRED = """
import importlib.util, sys
from fogmesh.agent.cli import keep_out_unused_extras
from fogmesh.agent.deferred import DEFERRED, defer, is_deferred
keep_out_unused_extras()
print([importlib.util.find_spec(m).name == m for m in DEFERRED], all(map(is_deferred, DEFERRED)))
defer("json.no_such_module")
print("json.no_such_module" in sys.modules)
"""


def test_a_stand_in_answers_find_spec_and_a_missing_module_gets_none() -> None:
    """``importlib.util.find_spec`` answers a stand-in's name with the real module's spec,
    without importing it; a module that is not there gets no stand-in (its import fails as
    before; on a Python without ``_lzma`` or ``_bz2`` so do ``lzma`` and ``bz2``)."""
    done = run_python(SPECS_OF_THE_DEFERRED)
    assert done.stdout.splitlines() == ["[True, True, True, True] True", "False"]


READ_CONFIG = """
import sys
from pathlib import Path
from fogmesh.agent.config import load_config

config = load_config(Path(sys.argv[1]))
print(config.labels["zone"], "yaml" in sys.modules)
"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"labels": {"zone": "north"}}', "north False"),  # as deploy/agent/install.sh writes it
        ("labels:\n  zone: north  # a comment\n", "north True"),
    ],
)
def test_a_settings_file_in_json_syntax_is_read_without_pyyaml(
    tmp_path: Path, text: str, expected: str
) -> None:
    """``agent.yaml`` in JSON syntax (JSON is YAML) is read by json; YAML syntax loads PyYAML."""
    path = tmp_path / "agent.yaml"
    path.write_text(text)
    done = run_python(READ_CONFIG, str(path))
    assert done.stdout.strip() == expected
