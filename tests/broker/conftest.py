"""The mesh helpers under the names the tests of other areas and ``bench/`` import from here;
they live in ``tests/support`` (``mesh_file``, ``mesh``, ``mqtt``), and the ``procs`` fixture
in ``tests/conftest.py``."""

from __future__ import annotations

from tests.support.mesh import MeshProcess, site_cloud_mesh, warm_persistent_subscriber
from tests.support.mesh_file import PASSWORDS, USERS, broker_spec, link_spec, port_of, write_mesh
from tests.support.mqtt import client, collect, eventually_delivered, wait_for

__all__ = [
    "PASSWORDS",
    "USERS",
    "MeshProcess",
    "broker_spec",
    "client",
    "collect",
    "eventually_delivered",
    "link_spec",
    "port_of",
    "site_cloud_mesh",
    "wait_for",
    "warm_persistent_subscriber",
    "write_mesh",
]
