"""Fast tests of the agent's pieces: phase machine, desired store, config and CLI, facts."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from fogmesh.agent.cli import build_parser, config_from_args
from fogmesh.agent.facts import default_node_id, gather_facts, sample_usage
from fogmesh.agent.phases import IllegalTransition, PhaseMachine, shortest_path
from fogmesh.agent.store import DesiredStore
from fogmesh.agent.tracked import retry_delay
from fogmesh.protocol import TRANSITIONS, DesiredState, WorkloadPhase, check_id

P = WorkloadPhase


def test_phase_machine_refuses_illegal_moves_loudly() -> None:
    seen: list[tuple[P, P]] = []
    m = PhaseMachine("w", listener=lambda a, b, _r: seen.append((a, b)))
    m.path(P.CONFIGURED, P.STARTING, P.RUNNING)
    with pytest.raises(IllegalTransition, match="running -> defined"):
        m.move(P.DEFINED)
    assert m.phase is P.RUNNING
    m.move(P.RUNNING, "still")  # staying is legal
    m.drive_to(P.REMOVED, "gone")
    assert m.phase.value == "removed"
    assert m.reason == "gone"
    with pytest.raises(IllegalTransition):
        m.move(P.RUNNING)
    assert seen[0] == (P.DEFINED, P.CONFIGURED)
    assert seen[-1][1] is P.REMOVED


def test_shortest_paths_use_legal_steps_only() -> None:
    for start in P:
        for goal in P:
            if start is P.REMOVED and goal is not P.REMOVED:
                with pytest.raises(IllegalTransition):
                    shortest_path(start, goal)
                continue
            chain = [start, *shortest_path(start, goal)]
            assert chain[-1] is goal
            for a, b in itertools.pairwise(chain):
                assert b in TRANSITIONS[a]


def test_store_is_atomic_and_ignores_older_generations(tmp_path: Path) -> None:
    store = DesiredStore(tmp_path, "n1")
    assert store.load() is None
    assert store.generation == -1
    assert store.accept(DesiredState(node="n1", generation=3))
    assert not store.accept(DesiredState(node="n1", generation=2))
    assert not store.accept(DesiredState(node="n1", generation=3))
    assert json.loads((tmp_path / "desired.json").read_text())["generation"] == 3
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    again = DesiredStore(tmp_path, "n1")
    assert again.load() is not None
    assert again.generation == 3
    assert DesiredStore(tmp_path, "other").load() is None  # not ours
    (tmp_path / "desired.json").write_text("{torn")
    assert DesiredStore(tmp_path, "n1").load() is None


def test_config_file_then_flags(tmp_path: Path) -> None:
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(
        "node_id: from-file\nbroker: {host: 10.1.1.1, port: 1884}\nlabels: {zone: north}\n"
        "location: {lat: 48.8, lon: 2.3}\nallow_operator_commands: true\n"
    )
    args = build_parser().parse_args(
        ["--config", str(cfg), "--broker-port", "1999", "--heartbeat", "2", "--label", "a=b"]
    )
    config = config_from_args(args)
    assert config.node_id == "from-file"
    assert (config.broker.host, config.broker.port) == ("10.1.1.1", 1999)
    assert config.heartbeat_interval_s == 2
    assert config.labels == {"zone": "north", "a": "b"}
    assert config.location is not None
    assert config.allow_operator_commands
    with pytest.raises(ValueError, match="node_id"):
        config_from_args(build_parser().parse_args(["--node-id", "bad/id"]))


def test_facts_and_usage(tmp_path: Path) -> None:
    node = default_node_id()
    assert check_id(node) == node
    assert "-" in node
    config = config_from_args(
        build_parser().parse_args(
            ["--state-dir", str(tmp_path), "--gpio", str(tmp_path), "--lat", "1", "--lon", "2"]
        )
    )
    facts = gather_facts(config, ["native"])
    assert facts.cpu_count >= 1
    assert facts.memory_bytes > 0
    assert facts.arch
    assert str(tmp_path) in facts.devices
    assert facts.location is not None
    usage = sample_usage(tmp_path)
    assert usage.memory_total_bytes > 0
    assert usage.disk_total_bytes > 0


def test_retry_delay_is_capped_and_jittered() -> None:
    delays = [retry_delay(a, base=1.0, cap=8.0) for a in range(12)]
    assert all(0.5 <= d <= 8.0 for d in delays)
    assert max(retry_delay(30, base=1.0, cap=8.0) for _ in range(50)) <= 8.0


def test_the_command_payload_limit_holds_a_state_chunk() -> None:
    """The router's limit is set from the upload's size, without the migration contract: a state
    chunk (base64) with its envelope must fit under it too."""
    from fogmesh.agent.commands import MAX_COMMAND_PAYLOAD
    from fogmesh.protocol.migration import MAX_CHUNK_BYTES

    assert MAX_CHUNK_BYTES * 4 // 3 + 64 * 1024 <= MAX_COMMAND_PAYLOAD
