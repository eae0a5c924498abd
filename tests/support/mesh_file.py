"""Mesh files for the tests: brokers on free ports with the test accounts, links between them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from fogmesh.broker.passwords import hash_password
from tests.support.brokers import free_port

__all__ = ["PASSWORDS", "USERS", "broker_spec", "link_spec", "port_of", "write_mesh"]

PASSWORDS = {
    "svc": "svc-pw",
    "bridge": "bridge-pw",
    "node-a": "node-a-pw",
    "acme": "acme-pw",
    "globex": "globex-pw",
}
_HASHES = {user: hash_password(pw) for user, pw in PASSWORDS.items()}
USERS = [
    {"username": "svc", "password_hash": _HASHES["svc"], "role": "service"},
    {"username": "bridge", "password_hash": _HASHES["bridge"], "role": "bridge"},
    {"username": "node-a", "password_hash": _HASHES["node-a"], "role": "node"},
    {"username": "acme", "password_hash": _HASHES["acme"], "role": "tenant"},
    {"username": "globex", "password_hash": _HASHES["globex"], "role": "tenant"},
]


def broker_spec(tmp: Path, name: str, *, port: int | None = None, **extra: Any) -> dict[str, Any]:
    """A mesh-file broker entry with one TCP listener on a free port and the test users."""
    spec: dict[str, Any] = {
        "listeners": [{"name": "default", "port": port or free_port()}],
        "data_dir": str(tmp / name),
        "users": USERS,
    }
    spec.update(extra)
    return spec


def link_spec(
    name: str, owner: str, remote: str, rules: list[dict[str, Any]], **extra: Any
) -> dict[str, Any]:
    """A link run by ``owner`` to mesh broker ``remote``, both ends as user ``bridge``."""
    cred = {"username": "bridge", "password": PASSWORDS["bridge"]}
    spec: dict[str, Any] = {
        "name": name,
        "broker": owner,
        "local": cred,
        "remote": {"broker": remote, **cred},
        "rules": rules,
        "backoff_base": 0.2,
        "backoff_cap": 2.0,
    }
    spec.update(extra)
    return spec


def write_mesh(path: Path, brokers: dict[str, Any], links: list[dict[str, Any]]) -> Path:
    """Write a mesh file and return its path."""
    path.write_text(yaml.safe_dump({"brokers": brokers, "links": links}))
    return path


def port_of(mesh: Path, broker: str) -> int:
    """The first listener port of ``broker`` in the mesh file."""
    data = yaml.safe_load(mesh.read_text())
    return int(data["brokers"][broker]["listeners"][0]["port"])
