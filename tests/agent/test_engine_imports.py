"""An agent with the Docker runtime configured (and its engine answering) speaks to dockerd with
its own client: it has loaded ``fogmesh.agent.runtime.engine`` and never aiohttp or aiodocker
(8.6 MB resident; docs/agent.md, "Memory")."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.agent.support import Probe
from tests.agent.test_imports import _modules_of_agent
from tests.support.brokers import BrokerProcess

pytestmark = pytest.mark.docker

HTTP_CLIENTS = {"aiohttp", "aiodocker", "multidict", "yarl", "aiohappyeyeballs"}


async def test_docker_agent_loads_no_http_client_library(
    broker: BrokerProcess, probe: Probe, tmp_path: Path
) -> None:
    modules = await _modules_of_agent(broker, probe, tmp_path, "docker")
    assert "runtime not available" not in (tmp_path / "agent.log").read_text()  # engine answered
    assert {"fogmesh.agent.runtime.docker", "fogmesh.agent.runtime.engine"} <= modules
    assert not (HTTP_CLIENTS & modules), sorted(HTTP_CLIENTS & modules)
