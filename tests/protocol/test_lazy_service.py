"""The shared plumbing loads on demand (docs/agent.md, "Memory"): ``fogmesh.service`` imports a
name's module when the name is first asked for, so the node agent, which holds no lease, loads
neither the lease keeper nor the leader duty; its settings models and the bus's ``RawMessage``
build their validators on first use, like the contract's.

The package names each export three times (``__all__``, the imports a type checker reads,
``_HOMES`` for run time); these tests keep the three the same."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from fogmesh import service
from fogmesh.bus import RawMessage
from fogmesh.protocol._model import Model
from tests.protocol.lazy_exports import assert_one_home_each


def test_every_export_has_one_home_and_is_that_modules_own() -> None:
    assert_one_home_each(service)


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="NoSuchName"):
        service.NoSuchName  # type: ignore[attr-defined]  # noqa: B018


LOADED = """
import json, sys
from fogmesh.service import BrokerSettings, add_broker_arguments, configure_logging, serve
print(json.dumps(sorted(m for m in sys.modules if m.startswith("fogmesh."))))
"""


def test_what_the_agent_asks_for_loads_no_lease_nor_duty() -> None:
    """In a fresh interpreter (this one has loaded the whole package)."""
    done = subprocess.run(
        [sys.executable, "-c", LOADED], capture_output=True, text=True, check=True, timeout=60
    )
    loaded = set(json.loads(done.stdout))
    assert {"fogmesh.service._broker", "fogmesh.service._logging", "fogmesh.service._run"} <= loaded
    unused = {"fogmesh.service._duty", "fogmesh.service._lease", "fogmesh.service._settings"}
    assert not unused & loaded
    assert "fogmesh.protocol.lease" not in loaded


@pytest.mark.parametrize(
    "model", [service.BrokerSettings, service.ServiceSettings, service.LeaderSettings, RawMessage]
)
def test_the_plumbings_models_build_their_validators_on_first_use(model: type[Model]) -> None:
    assert issubclass(model, Model)
    assert model.model_config.get("defer_build")
