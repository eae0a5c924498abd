"""The manifest's free-form fields are bounded, each refusal naming its field."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from fogmesh.protocol import AppManifest, error_info_from_validation
from fogmesh.protocol.manifest_limits import (
    MAX_COMMAND_ARG_CHARS,
    MAX_COMMAND_ARGS,
    MAX_ENV_VALUE_CHARS,
    MAX_ENV_VARS,
    MAX_LABELS,
    MAX_VOLUMES,
)


def _manifest(**component: Any) -> dict[str, Any]:
    return {"name": "app", "components": [{"name": "c", "image": "busybox", **component}]}


@pytest.mark.parametrize(
    ("component", "field"),
    [
        ({"env": {"BIG": "x" * 1_000_000}}, "components.0.env.BIG"),
        ({"env": {"V": "x" * (MAX_ENV_VALUE_CHARS + 1)}}, "components.0.env.V"),
        ({"env": {f"K{i}": "v" for i in range(MAX_ENV_VARS + 1)}}, "components.0.env"),
        ({"env": {f"K{i}": "v" * 10_000 for i in range(10)}}, "components.0.env"),
        ({"env": {"A=B": "v"}}, "components.0.env.A=B.[key]"),
        ({"env": {"A": "nul\x00"}}, "components.0.env.A"),
        ({"command": ["a"] * (MAX_COMMAND_ARGS + 1)}, "components.0.command"),
        ({"command": ["a" * (MAX_COMMAND_ARG_CHARS + 1)]}, "components.0.command.0"),
        ({"command": ["a" * 8000] * 5}, "components.0.command"),
        ({"labels": {"k": "v" * 1000}}, "components.0.labels.k"),
        ({"labels": {f"k{i}": "v" for i in range(MAX_LABELS + 1)}}, "components.0.labels"),
        (
            {
                "volumes": [
                    {"name": f"v{i}", "mount_path": f"/v{i}"} for i in range(MAX_VOLUMES + 1)
                ]
            },
            "components.0.volumes",
        ),
        ({"inputs": [f"s{i}" for i in range(65)]}, "components.0.inputs"),
        ({"placement": {"devices": ["/dev/x" * 100]}}, "components.0.placement.devices.0"),
    ],
)
def test_oversized_field_is_refused_by_name(component: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        AppManifest.model_validate(_manifest(**component))
    error = error_info_from_validation(info.value)
    assert [f.loc for f in error.fields] == [field], error.message


def test_values_within_the_bounds_are_accepted() -> None:
    manifest = AppManifest.model_validate(
        _manifest(
            env={f"K{i}": "v" * 400 for i in range(MAX_ENV_VARS)},
            command=["a" * 100] * MAX_COMMAND_ARGS,
            labels={f"k{i}": "v" * 256 for i in range(MAX_LABELS)},
        )
    )
    assert len(manifest.components[0].env) == MAX_ENV_VARS
