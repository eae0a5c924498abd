"""The mesh file of a bench run across a pair of network namespaces (``tests.support.netns``): a
cloud broker in one, a site broker in the other, and the site's WAN link to the cloud's address
on the pair's veth."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from fogmesh.broker.passwords import hash_password
from tests.support.netns import NsPair

__all__ = ["ns_mesh"]


def ns_mesh(
    root: Path,
    pair: NsPair,
    *,
    site: str,
    ports: tuple[int, int, int],
    password: str,
    rules: list[dict[str, Any]],
    nodes: Iterable[str] = (),
    **link: Any,
) -> Path:
    """Write ``root/mesh.yaml``: brokers ``cloud`` and ``site`` on 127.0.0.1 at ``ports`` (cloud,
    cloud's WAN listener on ``pair.cloud_addr``, site), with the accounts ``svc``, ``bridge`` and
    the ``nodes``, all of ``password``; the site's link ``wan`` carries ``rules``, ``link`` adds
    its other settings."""
    cloud_port, wan_port, site_port = ports
    digest = hash_password(password)
    users = [
        {"username": "svc", "role": "service", "password_hash": digest},
        {"username": "bridge", "role": "bridge", "password_hash": digest},
        *({"username": n, "role": "node", "password_hash": digest} for n in nodes),
    ]
    mesh = {
        "brokers": {
            "cloud": {
                "listeners": [
                    {"name": "default", "host": "127.0.0.1", "port": cloud_port},
                    {"name": "wan", "host": pair.cloud_addr, "port": wan_port},
                ],
                "data_dir": str(root / "cloud"),
                "users": users,
            },
            site: {
                "listeners": [{"name": "default", "host": "127.0.0.1", "port": site_port}],
                "data_dir": str(root / site),
                "users": users,
            },
        },
        "links": [
            {
                "name": "wan",
                "broker": site,
                "local": {"username": "bridge", "password": password},
                "remote": {"broker": "cloud", "listener": "wan", "username": "bridge",
                           "password": password},
                "rules": rules,
                **link,
            }
        ],
    }  # fmt: skip
    path = root / "mesh.yaml"
    path.write_text(yaml.safe_dump(mesh, sort_keys=False))
    return path
