"""Unit tests of the mesh's pure parts: config validation, ACLs, queue, back-off, echo, hashes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fogmesh.broker.acl import RoleTable
from fogmesh.broker.config import MeshConfigError, MeshSpec, RuleSpec, UserSpec, load_mesh
from fogmesh.broker.diskqueue import DiskQueue
from fogmesh.broker.echo import EchoMemory
from fogmesh.broker.passwords import hash_password, verify_password
from fogmesh.broker.rules import routes_from
from fogmesh.broker.topicmatch import filter_within, is_valid_filter, matches
from fogmesh.bus import backoff_delay
from tests.support.brokers import REPO
from tests.support.mesh_file import broker_spec, link_spec

BOTH = [{"pattern": "x/#", "direction": "both"}]


def test_topic_matching() -> None:
    assert matches("a/b/c", "a/+/c")
    assert matches("a/b/c", "a/#")
    assert matches("a", "a/#")
    assert not matches("a/b", "a/+/c")
    assert not matches("$SYS/x", "#")
    assert filter_within("fm/v1/data/acme/+/s", "fm/v1/data/acme/#")
    assert not filter_within("fm/v1/data/#", "fm/v1/data/acme/#")
    assert not filter_within("fm/v1/data/+/x", "fm/v1/data/acme/+")
    assert not is_valid_filter("a/b#")
    assert not is_valid_filter("a/#/b")
    assert not is_valid_filter("")


def test_roles_and_placeholders() -> None:
    table = RoleTable()
    user = UserSpec(username="node-a", password_hash=hash_password("x"), role="node")
    node = table.identity(user, "client-1")
    assert table.may_publish(node, "fm/v1/nodes/node-a/state")
    assert not table.may_publish(node, "fm/v1/nodes/node-a/desired")
    assert not table.may_publish(node, "fm/v1/nodes/node-b/state")
    assert table.may_publish(node, "fm/v1/reply/anyone")
    assert table.may_subscribe(node, "fm/v1/reply/node-a/client-1")
    assert not table.may_subscribe(node, "fm/v1/reply/client-1")  # bound to no account
    assert not table.may_subscribe(node, "fm/v1/reply/+")
    tenant = table.identity(
        UserSpec(username="acme", password_hash=hash_password("x"), role="tenant"), "c"
    )
    assert table.may_publish(tenant, "fm/v1/api/acme/apps/deploy")
    assert not table.may_publish(tenant, "fm/v1/api/globex/apps/deploy")
    assert not table.may_subscribe(tenant, "fm/v1/data/#")
    # a client id holding a wildcard never widens the reply grant
    sneaky = table.identity(user, "#")
    assert not table.may_subscribe(sneaky, "fm/v1/reply/#")


def test_password_hashes() -> None:
    encoded = hash_password("s3cret")
    assert verify_password("s3cret", encoded)
    assert not verify_password("other", encoded)
    for bad in ["", "$7$", "$7$x$y$z", "$6$abc$def", "$7$999999999$AAAA$AAAA", "plain"]:
        assert not verify_password("s3cret", bad)


def test_disk_queue_order_bound_and_drop_policy(tmp_path: Path) -> None:
    q = DiskQueue(tmp_path / "q.sqlite", max_messages=3, drop="oldest")
    for i in range(5):
        q.put("t", f"m{i}".encode(), 1, retain=False)
    assert [m.payload for m in q.peek(10)] == [b"m2", b"m3", b"m4"]
    assert q.dropped == 2
    q.remove_through(q.peek(1)[0].seq)
    assert len(q) == 2
    q.close()
    reopened = DiskQueue(tmp_path / "q.sqlite", max_messages=3, drop="newest")
    assert [m.payload for m in reopened.peek(10)] == [b"m3", b"m4"]  # survives a restart
    assert reopened.put("t", b"m5", 1, retain=True)
    assert not reopened.put("t", b"m6", 1, retain=False)
    assert [m.payload for m in reopened.peek(10)] == [b"m3", b"m4", b"m5"]
    assert reopened.dropped == 1
    reopened.close()


def test_backoff_is_capped_and_jittered() -> None:
    delays = [backoff_delay(n, base=0.5, cap=30.0) for n in range(200)]
    assert all(0 <= d <= 30.0 for d in delays)
    assert all(backoff_delay(0, base=0.5, cap=30.0) <= 0.5 for _ in range(100))
    assert len({round(d, 6) for d in delays}) > 100


def test_echo_memory_counts() -> None:
    echo = EchoMemory(ttl=60)
    echo.remember("t", b"p")
    echo.remember("t", b"p")
    assert echo.is_echo("t", b"p")
    assert echo.is_echo("t", b"p")
    assert not echo.is_echo("t", b"p")
    assert not echo.is_echo("t", b"other")


def test_routes_and_prefixes() -> None:
    routes = routes_from(
        [RuleSpec(pattern="tele/#", direction="both", local_prefix="l/", remote_prefix="sites/s1/")]
    )
    out = next(r for r in routes if r.source == "local")
    back = next(r for r in routes if r.source == "remote")
    assert out.source_filter == "l/tele/#"
    assert out.map("l/tele/x") == "sites/s1/tele/x"
    assert back.map("sites/s1/tele/y") == "l/tele/y"
    assert out.map("other/x") is None


def test_mesh_validation(tmp_path: Path) -> None:
    brokers = {n: broker_spec(tmp_path, n) for n in "abc"}
    triangle = [
        link_spec("ab", "a", "b", BOTH),
        link_spec("bc", "b", "c", BOTH),
        link_spec("ca", "c", "a", BOTH),
    ]
    MeshSpec.model_validate({"brokers": brokers, "links": triangle})
    # a broker on a cycle without split horizon would circulate messages: refused
    open_b = {**brokers, "b": {**brokers["b"], "split_horizon": False}}
    with pytest.raises(ValueError, match="split horizon"):
        MeshSpec.model_validate({"brokers": open_b, "links": triangle})
    # ...but a hub without split horizon is fine in a tree
    MeshSpec.model_validate({"brokers": open_b, "links": triangle[:2]})
    with pytest.raises(ValueError, match="unknown remote broker"):
        MeshSpec.model_validate({"brokers": brokers, "links": [link_spec("x", "a", "z", BOTH)]})
    with pytest.raises(ValueError, match="itself"):
        MeshSpec.model_validate({"brokers": brokers, "links": [link_spec("x", "a", "a", BOTH)]})
    bad_rule = [{"pattern": "a/#/b", "direction": "out"}]
    with pytest.raises(ValueError, match="pattern"):
        MeshSpec.model_validate({"brokers": brokers, "links": [link_spec("x", "a", "b", bad_rule)]})


@pytest.mark.parametrize(
    "text",
    [
        "",
        "brokers: [1, 2",
        "brokers: {}\n",
        "- just a list\n",
        "brokers: {a: {listeners: [{name: d, port: 99999}]}}\n",
    ],
)
def test_bad_mesh_files_are_refused_cleanly(tmp_path: Path, text: str) -> None:
    path = tmp_path / "mesh.yaml"
    path.write_text(text)
    with pytest.raises(MeshConfigError):
        load_mesh(path)
    result = subprocess.run(
        [sys.executable, "-m", "fogmesh.broker", "run", "--mesh", str(path), "--broker", "a"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "fogmesh-broker:" in result.stderr
    assert "Traceback" not in result.stderr


def test_example_mesh_file_is_valid() -> None:
    mesh = load_mesh(REPO / "deploy" / "mesh" / "example.yaml")
    assert mesh.links


def test_diskqueue_put_many_is_one_transaction_with_the_drop_policy(tmp_path: Path) -> None:
    q = DiskQueue(tmp_path / "q.sqlite", max_messages=3, drop="oldest")
    rows = [(f"t/{i}", f"p-{i}".encode(), 1, False) for i in range(5)]
    assert q.put_many(rows) == 5
    assert len(q) == 3
    assert q.dropped == 2
    assert [m.topic for m in q.peek(10)] == ["t/2", "t/3", "t/4"]
    q.close()
    again = DiskQueue(tmp_path / "q.sqlite", max_messages=3, drop="newest")
    assert len(again) == 3  # committed: a new connection sees them
    assert again.put_many(rows[:1]) == 0
    assert again.dropped == 1
    again.close()


def test_a_rule_at_qos_2_is_refused() -> None:
    """A link acknowledges a QoS 1 message only once it is on disk; at QoS 2 paho would send
    PUBREC on reading it, so a QoS 2 rule is refused rather than carried less safely."""
    assert RuleSpec(pattern="a/#", qos=0).qos == 0
    with pytest.raises(ValueError, match="less than or equal to 1"):
        RuleSpec(pattern="a/#", qos=2)


def test_remembered_publish_grants_answer_as_fresh_ones() -> None:
    """RoleTable keeps each identity's expanded publish patterns: asked again, or once the memo
    started over, every answer is the same as from a table that never saw the identity."""
    topics = ["fm/v1/nodes/node-a/state", "fm/v1/nodes/node-a/desired", "fm/v1/nodes/node-b/x"]
    users = [
        UserSpec(username=name, password_hash=hash_password("x"), role="node")
        for name in ("node-a", "node-b")
    ]
    table = RoleTable()
    for rnd in range(3):
        for user in users:
            for client_id in ("c-1", "c-2", "#"):
                who = table.identity(user, client_id)
                fresh = RoleTable()
                for topic in topics:
                    assert table.may_publish(who, topic) == fresh.may_publish(who, topic), rnd
        table._publish_grants.clear()  # the memo starting over
