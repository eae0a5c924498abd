"""A view of a node that is not online says how old it is (the registry's stored reads).

A real SQLite registry database written by the registry's own batch writer: two nodes heard
at the same moment, one then cut off with its site (``unreachable``), one still ``online``.
"""

from __future__ import annotations

import time
from pathlib import Path

from fogmesh.protocol.queries import ListNodes, ListWorkloads
from fogmesh.registry.db import BatchWriter, make_engine, migrate, reads
from fogmesh.registry.ops import ActualOp, Batch, HelloOp, LivenessOp, Op

FACTS = {
    "device_id": "",
    "arch": "x86_64",
    "cpu_count": 2,
    "memory_bytes": 1 << 30,
    "disk_bytes": 1 << 30,
}


def test_views_of_an_unreachable_node_say_how_old_they_are(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/registry.db")
    migrate(engine)
    heard = time.time() - 40  # both nodes were last heard 40 s ago
    work = {"name": "w", "tenant": "t", "app": "a", "component": "c", "phase": "running"}
    ops: list[Op] = [
        *(HelloOp(n, {**FACTS, "device_id": n}, "b", "online", heard) for n in ("cut", "ok")),
        *(ActualOp(n, [{**work, "name": f"w-{n}"}], heard) for n in ("cut", "ok")),
    ]
    write = BatchWriter(engine)
    write(Batch.of(*ops))
    write(Batch.of(LivenessOp("cut", "unreachable", time.time())))

    nodes = {n.node: n for n in reads.list_nodes(engine, ListNodes())[0]}
    assert nodes["ok"].age_s is None  # an online node's view is current
    age = nodes["cut"].age_s
    assert age is not None
    assert age >= 39
    loads = {w.node: w for w in reads.list_workloads(engine, "t", ListWorkloads())[0]}
    assert loads["ok"].age_s is None
    assert loads["cut"].as_of == nodes["cut"].last_seen
    cut_age = loads["cut"].age_s
    assert cut_age is not None
    assert cut_age >= 39
