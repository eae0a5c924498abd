"""The bus's filter index answers as aiomqtt's ``Topic.matches`` (the rule it replaced)."""

from __future__ import annotations

import aiomqtt
import pytest

from fogmesh.bus._matcher import FilterIndex, filter_matches

FILTERS = [
    "fm/v1/nodes/+/heartbeat",
    "fm/v1/nodes/+/+",
    "fm/v1/events/#",
    "#",
    "fm/#",
    "fm/v1/nodes/n1/heartbeat",
    "+/v1/+/+/hello",
    "$share/registry/fm/v1/nodes/+/state",
    "fm/v1/api/+/nodes/+",
    "fm/v1/nodes/+",
]
TOPICS = [
    "fm/v1/nodes/n1/heartbeat",
    "fm/v1/nodes/n2/hello",
    "fm/v1/nodes/n2/state",
    "fm/v1/nodes/n2",
    "fm/v1/nodes",
    "fm/v1/events",
    "fm/v1/events/fleet/node-lost",
    "fm/v1/api/acme/nodes/list",
    "fm/v1/api/acme/nodes/list/more",
    "fm",
    "other/v1/x/y/hello",
    "fm/v1/nodes/n1/heartbeat/",
    "a//b",
]


@pytest.mark.parametrize("topic", TOPICS)
def test_each_filter_matches_as_aiomqtt_does(topic: str) -> None:
    for topic_filter in FILTERS:
        expected = aiomqtt.Topic(topic).matches(topic_filter)
        assert filter_matches(topic_filter, topic) is expected, (topic_filter, topic)


def test_the_index_keeps_filter_order_and_follows_updates() -> None:
    index = FilterIndex(FILTERS)
    for topic in TOPICS:
        want = tuple(f for f in FILTERS if aiomqtt.Topic(topic).matches(f))
        assert index.match(topic) == want
        assert index.match(topic) == want  # the remembered answer is the same
    index.update(["fm/v1/nodes/+/hello"])
    assert index.match("fm/v1/nodes/n2/hello") == ("fm/v1/nodes/+/hello",)
    assert index.match("fm/v1/nodes/n1/heartbeat") == ()


def test_the_index_stays_bounded() -> None:
    index = FilterIndex(["fm/v1/nodes/+/heartbeat"], limit=10)
    for i in range(25):
        assert index.match(f"fm/v1/nodes/n{i}/heartbeat") == ("fm/v1/nodes/+/heartbeat",)
    assert len(index._seen) <= 10
