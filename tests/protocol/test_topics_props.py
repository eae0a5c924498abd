"""Property tests: topic builders and the parser round-trip and never accept a wildcard."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fogmesh.protocol import ContractError, TopicKind, check_id, parse_topic, topics
from fogmesh.protocol.topics import NodeChannel

legal_ids = st.text(
    alphabet=st.characters(
        blacklist_characters="+#/\x00", blacklist_categories=("Cc", "Cs", "Zl", "Zp")
    ),
    min_size=1,
    max_size=40,
).filter(lambda s: s == s.strip())

anything = st.text(max_size=60)


@given(legal_ids, st.sampled_from(list(NodeChannel)))
def test_node_topics_round_trip(node: str, channel: NodeChannel) -> None:
    ref = parse_topic(topics.node(node, channel))
    assert ref.kind is TopicKind.NODE
    assert (ref.node, ref.channel) == (node, channel)
    assert ref.topic() == topics.node(node, channel)


@given(legal_ids, legal_ids, legal_ids)
def test_three_id_topics_round_trip(a: str, b: str, c: str) -> None:
    assert parse_topic(topics.api(a, b, c)).topic() == topics.api(a, b, c)
    ref = parse_topic(topics.data(a, b, c))
    assert (ref.kind, ref.tenant, ref.app, ref.stream) == (TopicKind.DATA, a, b, c)
    ref = parse_topic(topics.node_cmd(a, b))
    assert (ref.kind, ref.node, ref.verb) == (TopicKind.NODE_CMD, a, b)
    for built in (
        topics.fleet_event(a),
        topics.tenant_event(a, b),
        topics.reply(a, b),
        topics.mesh_link(a, b),
        topics.lease(a),
    ):
        assert parse_topic(built).topic() == built


@given(anything)
def test_ids_with_forbidden_characters_are_refused(value: str) -> None:
    bad = (
        not value
        or any(ch in "+#/\x00" for ch in value)
        or any(ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F for ch in value)
        or value != value.strip()
        or len(value) > 128
    )
    if bad:
        with pytest.raises(ContractError):
            check_id(value)
    else:
        assert check_id(value) == value


@given(anything, st.sampled_from(["+", "#", "/", "\x00", "\n", "\x7f"]), anything)
def test_builders_never_accept_a_wildcard_or_separator(pre: str, bad: str, post: str) -> None:
    value = pre + bad + post
    with pytest.raises(ContractError):
        topics.node(value, "hello")
    with pytest.raises(ContractError):
        topics.data("t", value, "in")
    with pytest.raises(ContractError):
        topics.reply("acct", value)
    with pytest.raises(ContractError):
        topics.reply(value, "client")


@given(anything)
def test_parser_never_accepts_wildcards_and_never_crashes(raw: str) -> None:
    topic = "fm/v1/" + raw
    try:
        ref = parse_topic(topic)
    except ContractError:
        return
    assert "+" not in topic
    assert "#" not in topic
    assert ref.topic() == topic


@pytest.mark.parametrize(
    "topic",
    [
        "fm/v1/nodes/+/hello",
        "fm/v1/nodes/#",
        "fm/v1/nodes//hello",
        "fm/v1/nodes/n1/nonsense",
        "fm/v2/nodes/n1/hello",
        "fm/v1/api/t/apps",
        "",
        "fm/v1/data/t/a/s/extra",
    ],
)
def test_parser_refuses_outside_the_tree(topic: str) -> None:
    with pytest.raises(ContractError):
        parse_topic(topic)


def test_too_long_id_is_refused() -> None:
    check_id("x" * 128)
    with pytest.raises(ContractError):
        check_id("x" * 129)
