"""Each service installs and runs on its own: the node agent needs no sqlmodel, the registry no
aiodocker, and no service imports another."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# (distribution folder, modules its service runs, modules it must never need)
SERVICES = [
    (
        "services/node-agent",
        ["fogmesh.agent.service", "fogmesh.agent.cli"],
        ["sqlmodel", "sqlalchemy", "fogmesh.registry", "fogmesh.scheduler", "fogmesh.broker"],
    ),
    (
        "services/registry",
        ["fogmesh.registry.service", "fogmesh.registry.cli"],
        ["aiodocker", "aiohttp", "fogmesh.agent", "fogmesh.scheduler", "fogmesh.broker"],
    ),
    (
        "services/scheduler",
        ["fogmesh.scheduler.service", "fogmesh.scheduler.cli"],
        ["sqlmodel", "aiodocker", "fogmesh.agent", "fogmesh.registry", "fogmesh.broker"],
    ),
    (
        "services/migrator",
        ["fogmesh.migrator.service", "fogmesh.migrator.cli"],
        ["sqlmodel", "aiodocker", "fogmesh.agent", "fogmesh.registry", "fogmesh.scheduler"],
    ),
    (
        "services/artefacts",
        ["fogmesh.artefacts.store", "fogmesh.artefacts.cache", "fogmesh.artefacts.cli"],
        ["sqlmodel", "aiodocker", "aiohttp", "fogmesh.agent", "fogmesh.registry", "fogmesh.broker"],
    ),
    (
        "broker",
        ["fogmesh.broker.runner", "fogmesh.broker.cli"],
        ["sqlmodel", "aiodocker", "fogmesh.agent", "fogmesh.registry", "fogmesh.scheduler"],
    ),
]


@pytest.mark.parametrize(("folder", "modules", "forbidden"), SERVICES)
def test_service_imports_without_what_it_must_not_need(
    folder: str, modules: list[str], forbidden: list[str]
) -> None:
    block = "; ".join(f"sys.modules[{m!r}] = None" for m in forbidden)
    load = "; ".join(f"importlib.import_module({m!r})" for m in modules)
    code = f"import importlib, sys; {block}; {load}"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.parametrize(("folder", "modules", "forbidden"), SERVICES)
def test_distribution_declares_no_forbidden_dependency(
    folder: str, modules: list[str], forbidden: list[str]
) -> None:
    project = tomllib.loads((REPO / folder / "pyproject.toml").read_text())["project"]
    declared = " ".join(project.get("dependencies", [])).lower()
    for name in forbidden:
        if not name.startswith("fogmesh."):
            assert name not in declared, f"{folder} depends on {name}"
