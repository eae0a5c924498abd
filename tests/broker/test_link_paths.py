"""A link with two paths: the WAN, and a rate-limited "radio" that carries control only.

Two network namespaces (``tests.support.netns``) joined by two veth pairs: the pair's own
(the WAN, ``10.213.n.0/30``) and a second one this test adds inside them (the radio,
``10.214.n.0/30``, throttled by ``tc tbf``). The site's link lists ``wan`` then ``radio``
(keepalive 2 s on each); rule ``ctl/#`` may use both, ``bulk/#`` only the WAN; ``cmd/#`` comes
in from the cloud over both.

Mid-stream the WAN is cut silently (netem loss or nftables drops: no RST, no ICMP). The link
moves to the radio on its own; the control stream keeps crossing while the WAN is still cut,
no bulk message crosses the radio, the cloud's commands reach the site; the status names the
path and counts bytes per path. Healed, the link moves back to the WAN and the bulk stream
arrives, first arrivals in publish order, nothing lost.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.broker.test_netns_partition import _order
from tests.support.mesh_file import PASSWORDS, broker_spec, link_spec, write_mesh
from tests.support.mqtt import wait_for
from tests.support.netns import NsAgent, NsPair, _run, ns_mesh, warm_up

pytestmark = pytest.mark.netns

PORT = 1883  # each broker is alone in its namespace
STATUS = "fm/v1/mesh/site/links/cloud"
CTL = 150
BULK = 120
CMD = 40


def add_radio(pair: NsPair, rate: str = "256kbit") -> tuple[str, str]:
    """A second veth pair between the two namespaces, throttled both ways; (site, cloud) addrs."""
    net = pair.net
    site_dev, cloud_dev = "fmt-radio-s", "fmt-radio-c"
    _run(
        "ip", "link", "add", site_dev, "netns", pair.site, "type", "veth",
        "peer", "name", cloud_dev, "netns", pair.cloud,
    )  # fmt: skip
    addrs = (f"10.214.{net}.1", f"10.214.{net}.2")
    ends = ((pair.site, site_dev), (pair.cloud, cloud_dev))
    for (ns, dev), addr in zip(ends, addrs, strict=True):
        _run("ip", "-n", ns, "addr", "add", f"{addr}/30", "dev", dev)
        _run("ip", "-n", ns, "link", "set", dev, "up")
        _run(
            *pair.exec(ns, "tc", "qdisc", "replace", "dev", dev, "root", "tbf", "rate", rate,
                       "burst", "16kb", "latency", "400ms"),
        )  # fmt: skip
    return addrs


def path_mesh(tmp_path: Path, pair: NsPair, radio_cloud: str, *, keepalive: int = 2) -> Path:
    """The two-broker mesh with the site's two-path link ``cloud``."""
    brokers = {
        "site": broker_spec(tmp_path, "site", port=PORT),
        "cloud": broker_spec(
            tmp_path, "cloud", listeners=[{"name": "default", "host": "0.0.0.0", "port": PORT}]
        ),
    }
    rules = [
        {"pattern": "ctl/#", "direction": "out", "qos": 1, "paths": ["wan", "radio"]},
        {"pattern": "bulk/#", "direction": "out", "qos": 1, "paths": ["wan"]},
        {"pattern": "cmd/#", "direction": "in", "qos": 1},
    ]
    paths = [
        {"name": "wan", "host": pair.cloud_addr, "keepalive": keepalive},
        {
            "name": "radio",
            "host": radio_cloud,
            "keepalive": keepalive,
            "rate": 20000,
            "budget_bytes": 50_000_000,
        },
    ]
    link = link_spec("cloud", "site", "cloud", rules, paths=paths, probe_every=2)
    return write_mesh(tmp_path / "mesh.yaml", brokers, [link])


def bulk_order(payloads: list[str]) -> tuple[list[int], int]:
    """(distinct numbers in first-arrival order, duplicates) of ``b-N-filler`` payloads."""
    return _order([p.rsplit("-", 1)[0] for p in payloads], "b-")


def statuses(agent: NsAgent) -> list[dict[str, Any]]:
    return [json.loads(p) for p in agent.payloads(STATUS)]


async def test_wan_cut_moves_control_to_the_radio_and_back(tmp_path: Path, pair: NsPair) -> None:
    _, radio_cloud = add_radio(pair)
    mesh = path_mesh(tmp_path, pair, radio_cloud)
    async with ns_mesh(pair, mesh, PASSWORDS["svc"]) as ns:
        sub = await ns.agent(pair.cloud, "cloud-sub", persistent=True)
        await sub.subscribe("ctl/#")
        await sub.subscribe("bulk/#")
        site_sub = await ns.agent(pair.site, "site-sub", persistent=True)
        await site_sub.subscribe("cmd/#")
        watch = await ns.agent(pair.site, "site-watch")
        await watch.subscribe(STATUS)
        ctl_pub = await ns.agent(pair.site, "site-ctl")
        bulk_pub = await ns.agent(pair.site, "site-bulk")
        cmd_pub = await ns.agent(pair.cloud, "cloud-cmd")
        await warm_up(ctl_pub, sub, "ctl/warmup")
        await wait_for(
            lambda: any(s["state"] == "up" and s["path"] == "wan" for s in statuses(watch)),
            30,
            "status up over the wan",
        )

        filler = "x" * 300  # (one command line of the agent holds all BULK payloads: < 64 kB)
        ctl = asyncio.create_task(
            ctl_pub.publish("ctl/s", [f"c-{i}" for i in range(CTL)], gap=0.05)
        )
        bulk = asyncio.create_task(
            bulk_pub.publish("bulk/s", [f"b-{i}-{filler}" for i in range(BULK)], gap=0.05)
        )
        await wait_for(lambda: len(_order(sub.payloads("ctl/s"), "c-")[0]) >= 20, 30, "stream")
        print("cut:", pair.cut())
        cut_at = time.monotonic()
        seen = len(statuses(watch))
        await wait_for(
            lambda: any(s["path"] == "radio" for s in statuses(watch)[seen:]),
            60,
            "the link to move to the radio",
        )
        print(f"on the radio {time.monotonic() - cut_at:.1f}s after the cut")
        # what crossed the WAN before the cut is in; from here on the WAN carries nothing
        bulk_on_radio = len(sub.payloads("bulk/s"))
        await cmd_pub.publish("cmd/x", [f"k-{i}" for i in range(CMD)])
        # the whole control stream crosses while the WAN is still cut
        await ctl
        await wait_for(
            lambda: len(set(_order(sub.payloads("ctl/s"), "c-")[0])) >= CTL,
            90,
            f"all {CTL} control messages over the radio",
        )
        await wait_for(
            lambda: len(set(_order(site_sub.payloads("cmd/x"), "k-")[0])) >= CMD,
            60,
            f"all {CMD} commands from the cloud over the radio",
        )
        await bulk
        assert len(sub.payloads("bulk/s")) == bulk_on_radio, "bulk data crossed the radio"
        on_radio = [s for s in statuses(watch) if s["path"] == "radio"]
        assert on_radio
        assert any(s["queued_to_remote"] > 0 for s in on_radio), "no bulk data waits in the queue"

        pair.heal()
        healed_at = time.monotonic()
        seen = len(statuses(watch))
        await wait_for(
            lambda: any(s["path"] == "wan" for s in statuses(watch)[seen:]),
            60,
            "the link to move back to the wan",
        )
        print(f"back on the wan {time.monotonic() - healed_at:.1f}s after the heal")
        # moving back is no outage: the status stays up throughout
        assert all(s["state"] == "up" for s in statuses(watch)[seen:]), statuses(watch)[seen:]
        await wait_for(
            lambda: len(bulk_order(sub.payloads("bulk/s"))[0]) >= BULK,
            90,
            f"all {BULK} bulk messages after the heal",
        )
        bulk_first, bulk_dups = bulk_order(sub.payloads("bulk/s"))
        assert bulk_first == list(range(BULK)), "bulk first arrivals out of publish order"
        ctl_first, ctl_dups = _order(sub.payloads("ctl/s"), "c-")
        assert ctl_first == list(range(CTL)), "control first arrivals out of publish order"
        cmd_first, cmd_dups = _order(site_sub.payloads("cmd/x"), "k-")
        assert cmd_first == list(range(CMD))
        await wait_for(
            lambda: (
                statuses(watch)[-1]["path_bytes"].get("radio", 0) > 0
                and statuses(watch)[-1]["path_bytes"].get("wan", 0) > 0
            ),
            30,
            "bytes counted on both paths",
        )
        last = statuses(watch)[-1]
        print(
            f"bytes per path {last['path_bytes']}, duplicates: control {ctl_dups},"
            f" commands {cmd_dups}, bulk {bulk_dups}"
        )
