"""The partition rules on their own, without a broker: a cut site's nodes are unreachable in
the registry, the scheduler and the migrator; a silent whole site waits for its link's verdict;
a heartbeat older than the newest taken is not news; a manifest's tolerance ends the wait."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pydantic
import pytest

from fogmesh.migrator.fleet import FleetView
from fogmesh.protocol import EventKind, LinkState, LinkStatus, NodeFacts, NodeHello
from fogmesh.protocol.events import ReplacedData
from fogmesh.protocol.manifest import AppManifest
from fogmesh.protocol.node import Heartbeat, NodeLiveness, NodeStateMessage, Usage
from fogmesh.protocol.partition import PARTITION_GRACE_S, SiteLinks
from fogmesh.registry.liveness import LivenessTracker
from fogmesh.scheduler.config import SchedulerConfig
from fogmesh.scheduler.nodes import NodeTracker
from fogmesh.scheduler.ops import Changes, Operations
from fogmesh.scheduler.placement import Liveness, NodeInfo, PlacedWorkload
from fogmesh.scheduler.store import Store
from tests.scheduler.test_ops_unit import FakeFleet, manifest, nodes_of


def status(state: LinkState, *, broker: str = "site-a", link: str = "to-cloud") -> LinkStatus:
    return LinkStatus(broker=broker, link=link, state=state, queue_depth=0, dropped=0)


def facts(site: str = "site-a") -> NodeFacts:
    return NodeFacts(
        device_id="d", arch="x86_64", cpu_count=2, memory_bytes=2**30, disk_bytes=2**34,
        runtimes=["docker"], site=site,
    )  # fmt: skip


def beat(node: str, ts: float = 0.0) -> Heartbeat:
    usage = Usage(cpu_percent=1, memory_used_bytes=1, memory_total_bytes=2,
                  disk_used_bytes=1, disk_total_bytes=2)  # fmt: skip
    return Heartbeat(node=node, seq=0, interval_s=1.0, usage=usage, ts=ts or time.time())


# --- SiteLinks ------------------------------------------------------------------------------


def test_a_site_is_cut_only_while_every_link_of_it_is_down() -> None:
    links = SiteLinks()
    assert links.update(status(LinkState.UP)) == (False, False)
    assert links.update(status(LinkState.UP, link="to-peer")) == (False, False)
    assert links.update(status(LinkState.DOWN)) == (False, False)
    assert links.update(status(LinkState.DOWN, link="to-peer")) == (False, True)
    assert links.cut("site-a")
    assert not links.cut("site-b")
    assert links.update(status(LinkState.UP)) == (True, False)


def test_connecting_is_not_cut_and_a_will_made_earlier_still_wins() -> None:
    links = SiteLinks()
    will = status(LinkState.DOWN)  # made when the connection opened
    links.update(status(LinkState.CONNECTING))
    assert not links.cut("site-a")
    links.update(status(LinkState.UP))
    assert links.update(will) == (False, True)


def test_the_late_will_of_a_path_the_link_left_does_not_cut_its_site() -> None:
    links = SiteLinks()
    wan_will = status(LinkState.DOWN).model_copy(update={"path": "wan"})  # since None: a will
    radio_will = status(LinkState.DOWN).model_copy(update={"path": "radio"})
    links.update(status(LinkState.UP).model_copy(update={"path": "radio"}))
    # the far broker noticed the silent WAN only after the link had moved to the radio
    assert links.update(wan_will) == (False, False)
    assert not links.cut("site-a")
    # the loss of the path in use still cuts, and so does a single-path link's will
    assert links.update(radio_will) == (False, True)
    links.update(status(LinkState.UP))
    assert links.update(status(LinkState.DOWN)) == (False, True)


def test_a_silent_site_holds_only_while_it_runs_links_and_is_not_cut() -> None:
    links = SiteLinks()
    assert not links.holds("site-a", 0.0, 100.0, quiet_s=1.5)  # no link known: a plain site
    links.update(status(LinkState.UP))
    assert links.holds("site-a", 0.0, 100.0, quiet_s=1.5)
    assert not links.holds("site-a", 99.0, 100.0, quiet_s=1.5)  # the site still speaks
    links.update(status(LinkState.DOWN))
    assert not links.holds("site-a", 0.0, 100.0, quiet_s=1.5)  # cut: unreachable instead


# --- the registry's tracker -----------------------------------------------------------------


def test_registry_cut_nodes_are_unreachable_never_lost_and_mend_with_a_grace() -> None:
    t = LivenessTracker(missed=3)
    t.alive("n", 0.0, retained=False, via="heartbeat", interval=1.0)
    cut = t.cut(["n", "unknown"], 0.5)
    assert [(c.node, c.new, c.kind) for c in cut] == [("n", "unreachable", None)]
    assert t.tick(1000.0) == []
    assert t.alive("n", 1000.5, retained=False, via="heartbeat") == []  # the link decides
    assert t.state("n") == "unreachable"
    mended = t.mend(["n"], 1001.0)
    assert [(m.old, m.new) for m in mended] == [("unreachable", "online")]
    assert t.tick(1003.9) == []  # a grace of missed intervals for the first heartbeat
    assert t.alive("n", 1003.95, retained=False, via="heartbeat") == []
    assert t.tick(1005.0) == []
    assert [tr.kind for tr in t.tick(1005.5)] == [EventKind.NODE_STALE]


def test_registry_a_will_still_ends_an_unreachable_node() -> None:
    t = LivenessTracker(missed=3)
    t.alive("n", 0.0, retained=False, via="hello", boot_id="b")
    t.cut(["n"], 0.1)
    # held a moment (it may be replayed from the cut's backlog, a newer boot's hello behind it)
    assert t.last_will("n", 0.2, boot_id="b") == []
    lost = t.tick(100.0)
    assert [tr.kind for tr in lost] == [EventKind.NODE_LOST]
    assert t.mend(["n"], 100.1) == []
    assert t.state("n") == "offline"


def test_registry_a_silent_whole_site_waits_for_its_link_then_is_lost() -> None:
    t = LivenessTracker(missed=3)
    held: list[str] = []

    def hold(node: str, now: float, quiet_s: float) -> bool:
        held.append(node)
        return True

    t.hold = hold
    t.alive("n", 0.0, retained=False, via="heartbeat", interval=1.0)
    assert [tr.kind for tr in t.tick(1.6)] == [EventKind.NODE_STALE]
    for now in range(4, 3 + int(PARTITION_GRACE_S)):
        assert t.tick(float(now)) == []
    assert held
    lost = t.tick(3.0 + PARTITION_GRACE_S + 1.0)
    assert [tr.kind for tr in lost] == [EventKind.NODE_LOST]


def test_registry_an_older_heartbeat_is_not_news() -> None:
    t = LivenessTracker(missed=3)
    t.alive("n", 0.0, retained=False, via="heartbeat", interval=1.0)
    assert t.fresh("n", 100.0, 7)
    assert not t.fresh("n", 99.0, 6)  # a straggler
    assert not t.fresh("n", 100.0, 7)  # a duplicate
    assert t.fresh("n", 100.5, 8)
    assert t.fresh("n", 101.0, 0)  # the agent restarted
    assert t.fresh("n", 50.0, 1)  # its clock was stepped back


# --- the scheduler's tracker ----------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_scheduler_an_unreachable_node_is_stale_not_offline_and_is_judged_afresh_on_mend() -> None:
    clock = Clock()
    t = NodeTracker(default_interval_s=1.0, clock=clock)
    t.on_link(status(LinkState.UP))
    t.on_hello(NodeHello(node="n", facts=facts()))
    t.on_state("n", NodeLiveness.ONLINE)
    t.on_heartbeat(beat("n"))
    clock.now += 4.0  # silent past offline_after: held while the whole site is silent
    assert t.offline() == set()
    t.on_link(status(LinkState.DOWN))
    clock.now += 1000.0
    assert t.offline() == set()
    assert t.liveness(t.nodes["n"]) is Liveness.STALE
    assert t.unreachable_for("n") == 1000.0
    t.on_link(status(LinkState.UP))
    assert t.unreachable_for("n") is None
    assert t.liveness(t.nodes["n"]) is Liveness.ONLINE
    clock.now += 3.5 + PARTITION_GRACE_S
    assert t.offline() == {"n"}


def test_scheduler_a_silent_node_of_a_speaking_site_is_lost_on_time() -> None:
    clock = Clock()
    t = NodeTracker(default_interval_s=1.0, clock=clock)
    t.on_link(status(LinkState.UP))
    for node in ("n", "m"):
        t.on_hello(NodeHello(node=node, facts=facts()))
        t.on_state(node, NodeLiveness.ONLINE)
        t.on_heartbeat(beat(node))
    for _ in range(4):
        clock.now += 1.0
        t.on_heartbeat(beat("m"))
    assert t.offline() == {"n"}


# --- the migrator's view --------------------------------------------------------------------


def test_migrator_neither_loses_nor_uses_an_unreachable_node() -> None:
    fleet = FleetView(offline_after=3)
    fleet.on_link(status(LinkState.UP), now=0.0)
    fleet.on_hello(NodeHello(node="n", facts=facts()))
    fleet.on_state("n", NodeLiveness.ONLINE, now=0.0)
    fleet.on_heartbeat(beat("n"), now=1.0)
    assert fleet.live() == ["n"]
    fleet.on_link(status(LinkState.DOWN), now=2.0)
    assert fleet.judge(now=1000.0) == []
    assert fleet.live() == []
    fleet.on_link(status(LinkState.UP), now=1001.0)
    assert fleet.judge(now=1002.0) == []
    assert fleet.live() == ["n"]


def test_a_node_may_not_say_it_is_unreachable() -> None:
    with pytest.raises(pydantic.ValidationError):
        NodeStateMessage(node="n", state=NodeLiveness.UNREACHABLE)


# --- the scheduler's heal -------------------------------------------------------------------


class CutFleet(FakeFleet):
    """The unit tests' fleet, with nodes cut off for a given number of seconds."""

    def __init__(self) -> None:
        super().__init__()
        self.cut: dict[str, float] = {}

    def unreachable_for(self, node_id: str) -> float | None:
        return self.cut.get(node_id)

    def infos(self, placed: dict[str, list[PlacedWorkload]]) -> Iterable[NodeInfo]:
        for info in super().infos(placed):
            yield replace(info, liveness=Liveness.STALE) if info.id in self.cut else info


def test_heal_leaves_an_unreachable_node_alone_until_its_tolerance_runs_out(
    tmp_path: Path,
) -> None:
    fleet = CutFleet()
    fleet.add("n1")
    ops = Operations(Store(tmp_path), fleet, SchedulerConfig(state_dir=tmp_path))
    ops.deploy("acme", manifest(), Changes())
    ops.deploy("acme", manifest_named("tolerant", partition_tolerance_s=60), Changes())
    fleet.add("n2")
    fleet.cut["n1"] = 3600.0  # an hour: the default tolerance is forever
    changes = Changes()
    ops.heal(changes, retry_pending=True)
    assert nodes_of(ops.get("acme", "shop")) == ["n1"]
    assert nodes_of(ops.get("acme", "tolerant")) == ["n2"]
    [(_, event)] = changes.events
    assert event.payload_as(ReplacedData) == ReplacedData(from_="n1", to="n2")


def manifest_named(name: str, **comp: Any) -> AppManifest:
    base = manifest(**comp)
    return base.model_copy(update={"name": name})
