"""Shared fixtures: real brokers on free ports."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from fogmesh.service import configure_logging
from tests.support.brokers import BrokerProcess

configure_logging("debug", json_lines=False)

BROKER_KINDS = ["amqtt", "mosquitto"]


@pytest.fixture(params=BROKER_KINDS)
def broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BrokerProcess]:
    """A fresh broker of each kind (embedded amqtt, real Mosquitto) for the test."""
    kind = str(request.param)
    if kind == "mosquitto" and not (
        shutil.which("mosquitto") or Path("/usr/sbin/mosquitto").exists()
    ):
        pytest.fail("mosquitto is not installed; .ci/run installs it")
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
