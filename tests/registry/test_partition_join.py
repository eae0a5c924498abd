"""A replica joining a group of ``--share-by registry`` replicas (registry/partition.py): until it
has joined, it takes every key only if it found no live member when it started; beside live
members it takes none, because they, not knowing it yet, still take every key. Otherwise the
retained hellos replayed to it as it subscribes were taken twice, and every node joined twice
(`test_replicas_split_the_fleet_through_the_nats_cluster` saw 24 joins for 12 nodes)."""

from __future__ import annotations

from fogmesh.registry.db import make_engine
from fogmesh.registry.partition import Partition, owner_of

KEYS = [f"node-{i}".encode() for i in range(32)]


async def test_a_newcomer_beside_a_live_member_takes_no_key_until_it_joins(
    sqlite_url: str,
) -> None:
    engine = make_engine(sqlite_url)
    try:
        first = Partition(engine, group="g", me="registry-a", period=5.0)
        await first.prepare()
        assert first.members == ["registry-a"]
        assert all(first.owns(k) for k in KEYS)  # alone, before joining: every key
        await first.on_connect(None)  # type: ignore[arg-type]  # joins; the bus is not used
        assert all(first.owns(k) for k in KEYS)

        newcomer = Partition(engine, group="g", me="registry-b", period=5.0)
        await newcomer.prepare()
        assert newcomer.members == ["registry-a", "registry-b"]
        assert not any(newcomer.owns(k) for k in KEYS)  # a still takes them all
        assert all(first.owns(k) for k in KEYS)  # a has not seen b's row: there is none yet

        await newcomer.on_connect(None)  # type: ignore[arg-type]
        await first.refresh()
        members = ["registry-a", "registry-b"]
        assert first.members == newcomer.members == members
        for key in KEYS:  # joined: each key has exactly one owner
            assert first.owns(key) != newcomer.owns(key)
            assert newcomer.owns(key) == (owner_of(key, members) == "registry-b")
    finally:
        engine.dispose()
