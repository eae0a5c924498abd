"""The event filters and the enum-taking builders of ``fogmesh.protocol.topics``."""

from __future__ import annotations

import pytest

from fogmesh.protocol import (
    APPS_RESOURCE,
    AppAction,
    ContractError,
    EventKind,
    NodeVerb,
    TopicKind,
    parse_topic,
    topics,
)


def test_event_filters() -> None:
    assert topics.events_filter() == "fm/v1/events/#"
    assert topics.fleet_event_filter() == "fm/v1/events/fleet/+"
    assert topics.fleet_event_filter(EventKind.NODE_LOST) == "fm/v1/events/fleet/node-lost"
    assert topics.tenant_event_filter("acme") == "fm/v1/events/tenants/acme/+"
    assert topics.tenant_event_filter() == "fm/v1/events/tenants/+/+"
    assert (
        topics.tenant_event_filter("acme", EventKind.APP_DEPLOYED)
        == "fm/v1/events/tenants/acme/app-deployed"
    )
    with pytest.raises(ContractError):
        topics.tenant_event_filter("a/b")


def test_builders_take_the_enums() -> None:
    ref = parse_topic(topics.tenant_event("acme", EventKind.APP_UPDATED))
    assert (ref.kind, ref.tenant, ref.event) == (TopicKind.TENANT_EVENT, "acme", "app-updated")
    assert topics.fleet_event(EventKind.NODE_BACK) == "fm/v1/events/fleet/node-back"
    assert topics.api("acme", APPS_RESOURCE, AppAction.DEPLOY) == "fm/v1/api/acme/apps/deploy"
    assert topics.api_filter(APPS_RESOURCE, AppAction.GET) == "fm/v1/api/+/apps/get"
    assert topics.node_cmd("n1", NodeVerb.LOGS) == "fm/v1/nodes/n1/cmd/logs"
    assert [v.value for v in NodeVerb][:4] == ["logs", "upload", "restart", "report"]
    assert topics.node_cmd("n1", NodeVerb.STATE_PUT) == "fm/v1/nodes/n1/cmd/state-put"


def test_mesh_link_filter_matches_every_link_status() -> None:
    import aiomqtt

    assert topics.mesh_link_filter() == "fm/v1/mesh/+/links/+"
    assert aiomqtt.Topic(topics.mesh_link("site-a", "wan")).matches(topics.mesh_link_filter())
