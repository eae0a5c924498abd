"""The models refuse what breaks the contract, and the docs follow the models."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import pytest
from pydantic import ValidationError

import fogmesh.bus
import fogmesh.protocol
import fogmesh.service
from fogmesh.protocol import (
    DesiredState,
    Request,
    WorkloadPhase,
    WorkloadSpec,
    can_transition,
    error_info_from_validation,
)
from fogmesh.protocol.docs import render_topics

REPO = Path(__file__).resolve().parents[2]


def _spec(name: str = "app-c-0", **kw: object) -> WorkloadSpec:
    fields: dict[str, object] = {
        "name": name,
        "tenant": "acme",
        "app": "app",
        "component": "c",
        "runtime": "docker",
        "image": "img",
    }
    fields.update(kw)
    return WorkloadSpec.model_validate(fields)


def test_topics_doc_is_current() -> None:
    current = (REPO / "docs" / "topics.md").read_text()
    assert current == render_topics(), (
        "docs/topics.md is stale: run `python -m fogmesh.protocol.docs > docs/topics.md`"
    )


def test_desired_state_refuses_duplicate_names() -> None:
    with pytest.raises(ValidationError) as info:
        DesiredState(node="n1", generation=1, workloads=[_spec(), _spec()])
    assert "repeated" in str(info.value)


def test_runtime_needs_what_it_runs() -> None:
    with pytest.raises(ValidationError):
        _spec(image=None)
    with pytest.raises(ValidationError):
        _spec(runtime="native", image=None)
    assert _spec(runtime="native", image=None, executable="/bin/true").executable == "/bin/true"


def test_spec_hash_follows_content() -> None:
    assert _spec().spec_hash() == _spec().spec_hash()
    assert _spec().spec_hash() != _spec(env={"A": "1"}).spec_hash()


def test_unknown_fields_and_bad_reply_to_are_refused() -> None:
    with pytest.raises(ValidationError):
        Request.model_validate({"bogus": 1})
    with pytest.raises(ValidationError):
        Request.model_validate({"reply_to": "fm/v1/reply/+"})


def test_validation_errors_name_their_fields() -> None:
    with pytest.raises(ValidationError) as info:
        DesiredState.model_validate({"node": "a/b", "generation": -1})
    error = error_info_from_validation(info.value)
    assert {f.loc for f in error.fields} == {"node", "generation"}


def test_state_machine_allows_only_legal_moves() -> None:
    assert can_transition(WorkloadPhase.DEFINED, WorkloadPhase.CONFIGURED)
    assert can_transition(WorkloadPhase.RUNNING, WorkloadPhase.RUNNING)
    assert not can_transition(WorkloadPhase.DEFINED, WorkloadPhase.RUNNING)
    assert not any(
        can_transition(WorkloadPhase.REMOVED, p) for p in WorkloadPhase if p.value != "removed"
    )


@pytest.mark.parametrize("package", [fogmesh.protocol, fogmesh.bus, fogmesh.service])
def test_public_surface_is_declared(package: object) -> None:
    """Each package lists its public names in ``__all__``, and each name exists."""
    exported = package.__all__  # type: ignore[attr-defined]
    for name in exported:
        assert hasattr(package, name), name
    for info in pkgutil.iter_modules(package.__path__):  # type: ignore[attr-defined]
        module = importlib.import_module(f"{package.__name__}.{info.name}")  # type: ignore[attr-defined]
        if not info.name.startswith("_"):
            assert hasattr(module, "__all__"), f"{module.__name__} has no __all__"
