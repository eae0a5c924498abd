"""``fogmesh up``'s WAN link rules (``plan.link_rules``, docs/artefacts.md "Link rules"): every
topic of the catalogue is carried the way its readers need, by one rule at most per direction,
and what only the broker of its writer reads (leases, the scheduler's store, device readings)
crosses no link."""

from __future__ import annotations

import re

import pytest

from fogmesh.broker.config import RuleSpec
from fogmesh.broker.rules import routes_from
from fogmesh.cli.fleet.plan import LOCAL_TREES, link_rules
from fogmesh.protocol.artefacts import cache_duty
from fogmesh.protocol.catalogue import CATALOGUE, TopicSpec

SITE = "site-a"
SELF_CARRIED = {"fm/v1/mesh/{broker}/links/{link}"}
"""Written on both of its brokers by the link itself (its status; its will on the far one)."""


def _ways(topic: str, site: str = SITE) -> set[str]:
    """The directions site's link carries ``topic``: ``up`` (site to cloud), ``down``."""
    routes = routes_from([RuleSpec.model_validate(r) for r in link_rules(site)])
    ways: set[str] = set()
    for side, way in (("local", "up"), ("remote", "down")):
        carrying = [r for r in routes if r.source == side and r.map(topic) is not None]
        assert len(carrying) <= 1, f"{topic} {way} by {len(carrying)} rules (a duplicate)"
        if carrying:
            ways.add(way)
    return ways


def _sample(pattern: str) -> str:
    """A topic of a catalogue pattern: each ``{placeholder}`` given a value."""
    return re.sub(r"\{(\w+)\}", lambda m: f"x{m.group(1)}", pattern)


@pytest.mark.parametrize("spec", CATALOGUE, ids=lambda s: s.pattern)
def test_every_catalogue_topic_is_placed(spec: TopicSpec) -> None:
    pattern = spec.pattern
    tree = pattern.split("/")[2]
    ways = _ways(_sample(pattern))
    if tree in LOCAL_TREES or pattern in SELF_CARRIED:
        assert ways == set(), f"{pattern} is read on its writer's broker only"
    else:
        assert ways, f"{pattern} crosses no link: place its tree in plan.link_rules"


@pytest.mark.parametrize(
    ("topic", "ways"),
    [
        # leases: the cloud's duties in the cloud, a site's migrator on its site broker
        ("fm/v1/leases/scheduler", set()),
        ("fm/v1/leases/migrator", set()),
        ("fm/v1/leases/migrator-site-a", set()),
        ("fm/v1/leases/migrator-site-b", set()),
        ("fm/v1/store/scheduler/acme/shop", set()),
        ("fm/v1/devices/acme/shop/edge-1/ttyUSB0", set()),
        # a node's own channels go up only: no site reads another site's nodes
        ("fm/v1/nodes/edge-1/hello", {"up"}),
        ("fm/v1/nodes/edge-1/state", {"up"}),
        ("fm/v1/nodes/edge-1/heartbeat", {"up"}),
        ("fm/v1/nodes/edge-1/actual", {"up"}),
        ("fm/v1/nodes/edge-1/trouble", {"up"}),
        # written in the cloud (or by the site's migrator during a cut), and node to node
        ("fm/v1/nodes/edge-1/desired", {"up", "down"}),
        ("fm/v1/nodes/edge-1/cmd/state-put", {"up", "down"}),
        ("fm/v1/nodes/edge-1/cmd/logs", {"up", "down"}),
        # requests up, answers to whoever asked
        ("fm/v1/api/acme/apps/deploy", {"up"}),
        ("fm/v1/ops/scheduler/move", {"up"}),
        (f"fm/v1/ops/{cache_duty(SITE)}/artefact-fetch", {"up", "down"}),
        (f"fm/v1/ops/{cache_duty(SITE)}/reply/cache-1", {"up", "down"}),
        (f"fm/v1/ops/{cache_duty('site-b')}/reply/cache-1", {"up"}),
        ("fm/v1/reply/operator/cli", {"up", "down"}),
        # the mesh: sessions follow their clients; each link writes its own status itself
        ("fm/v1/mesh/sessions/claim", {"up", "down"}),
        ("fm/v1/mesh/sessions/handoff/site-b", {"up", "down"}),
        ("fm/v1/mesh/site-b/links/site-b-cloud", set()),
        ("fm/v1/mesh/site-a/links/site-a-cloud", set()),
        # audit records are read by operators, in the cloud
        ("fm/v1/audit/registry", {"up"}),
        ("fm/v1/events/fleet/node-lost", {"up", "down"}),
        ("fm/v1/data/acme/shop/out", {"up", "down"}),
        ("fm/v1/accounts/edge-9", {"up", "down"}),
        ("fm/v1/tenants/acme", {"up", "down"}),
    ],
)
def test_each_topic_crosses_as_its_readers_need(topic: str, ways: set[str]) -> None:
    assert _ways(topic) == ways
