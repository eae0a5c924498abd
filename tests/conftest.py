"""Shared fixtures: real brokers on free ports.

The suite runs serially or in pytest-xdist workers (``FOGMESH_TEST_WORKERS=N bash dev.sh test``
gives ``-n N --dist loadgroup``), so every test keeps to its own resources:

* ports from :func:`tests.support.brokers.free_port` (a block per worker), never a fixed one
  outside a network namespace of the test's own;
* files under ``tmp_path``; names of Docker objects, tenants, client ids, namespaces and
  process markers made unique per test (``tests.support.buses.unique``); cleanup and
  process scans by those marks only, never by a process or image name;
* PostgreSQL through the ``pg_url``/``db_url`` fixtures (a schema of the session's own);
* a test that cannot avoid sharing something fixed with another test (the same Docker node
  names seen by a scan, one file in the repo) names it in ``@pytest.mark.xdist_group("...")``
  on both, so they run one after the other on one worker.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from fogmesh.service import configure_logging
from tests.support.brokers import BrokerProcess, mosquitto_etc, require_mosquitto
from tests.support.mesh import MeshProcess
from tests.support.netns import NsPair, netns_unavailable, ns_pair

configure_logging("debug", json_lines=False)

BROKER_KINDS = ["amqtt", "mosquitto"]


@pytest.fixture(params=BROKER_KINDS)
def broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BrokerProcess]:
    """A fresh broker of each kind (embedded amqtt, real Mosquitto) for the test."""
    kind = str(request.param)
    if kind == "mosquitto":
        require_mosquitto()
    proc = BrokerProcess(kind, tmp_path / "broker").start()
    yield proc
    proc.stop()


@pytest.fixture
def amqtt_broker(tmp_path: Path) -> Iterator[BrokerProcess]:
    """A fresh embedded amqtt broker."""
    proc = BrokerProcess("amqtt", tmp_path / "amqtt").start()
    yield proc
    proc.stop()


@pytest.fixture
def mosquitto_broker(tmp_path: Path) -> Iterator[BrokerProcess]:
    """A fresh Mosquitto broker."""
    proc = BrokerProcess("mosquitto", tmp_path / "mosquitto").start()
    yield proc
    proc.stop()


@pytest.fixture
def install_dir() -> Iterator[Path]:
    """A directory user ``mosquitto`` can reach, as /etc/mosquitto/... is (pytest's are 0700)."""
    with mosquitto_etc() as path:
        yield path


@pytest.fixture
def procs() -> Iterator[list[MeshProcess]]:
    """Mesh broker processes registered here are killed after the test."""
    started: list[MeshProcess] = []
    yield started
    for proc in reversed(started):
        proc.kill()


@pytest.fixture
def pair() -> Iterator[NsPair]:
    """Two network namespaces joined by a veth pair (``tests/support/netns.py``), removed after;
    skipped where namespaces cannot be made, but never in CI. A module may define its own
    ``pair`` (the scheduler's tests do), which overrides this one there."""
    reason = netns_unavailable()
    if reason is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"netns test must run in CI: {reason}")
        pytest.skip(reason)
    with ns_pair() as made:
        yield made
