"""The example flows of examples/node-red/ in a real Node-RED against a real fleet.

One fleet for the module, built as docs describe it (tests/support/documented_fleet.py: the
embedded broker, the registry, the scheduler, two node agents whose workloads get the
broker and the tenant's account, as ``fogmesh up`` gives them), and one Node-RED running the
three example flows as they are shipped, their accounts' credentials in the userDir's
flows_cred.json only. The test presses the flows' inject buttons through the editor's API
and reads their results from the flows' own http endpoints. The alert test kills a node, so
it runs last.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import aiomqtt
import psutil
import pytest

from tests.nodered.nodered import NodeRed, ensure_installed, load_flows
from tests.support.brokers import wait_port
from tests.support.documented_fleet import (
    DOCUMENTED_USERS,
    Fleet,
    cli,
    kill_marked,
    start_agent,
    start_broker,
    start_registry,
    start_scheduler,
)
from tests.support.mqtt import wait_for

pytestmark = pytest.mark.xdist_group("nodered")  # the module's fleet and Node-RED are shared
NODES = ("edge-1", "edge-2")
FLOWS = ("deploy-sample-app", "alerts", "simulated-sensor")


def _kill_workloads(fleet: Fleet) -> None:
    """Kill the fleet's workloads (they outlive a killed or stopped agent): the shims by the
    fleet's folder in their command line, the apps by the tenant password in their env."""
    kill_marked(str(fleet.root))
    secret = fleet.password("acme")
    for proc in psutil.process_iter(["pid"]):
        with contextlib.suppress(psutil.Error):
            if proc.environ().get("FM_PASSWORD") == secret:
                proc.kill()


def _wait_log(fleet: Fleet, name: str, needle: str, timeout: float) -> None:
    asyncio.run(wait_for(lambda: needle in fleet.log(name), timeout, f"{needle!r} in {name}"))


@dataclass
class Stack:
    """The module's fleet and the Node-RED running the example flows against it."""

    fleet: Fleet
    red: NodeRed


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    ensure_installed()
    fleet = Fleet(tmp_path_factory.mktemp("fleet"))
    red = NodeRed(fleet.root / "node-red")
    acme = {"username": "acme", "password": fleet.password("acme")}
    credentials = {  # the userDir's flows_cred.json: flows.json holds none
        "fm-deploy-acct": acme,
        "fm-sensor-acct": acme,
        "fm-alerts-acct": {"username": "operator", "password": fleet.password("operator")},
    }
    env = {
        "FOGMESH_PORT": str(fleet.port),  # as fleet.env exports them
        "FOGMESH_TENANT": "acme",
        "FOGMESH_PYTHON": sys.executable,  # has fogmesh_sample installed
    }
    try:
        start_broker(fleet, "amqtt", fleet.root, users=(*DOCUMENTED_USERS, ("edge-2", "node")))
        red.start(load_flows(*FLOWS), credentials, env)  # starts while the fleet does
        wait_port(fleet.port, 60.0)
        _wait_log(fleet, "broker", "ready cloud", 60)
        start_registry(fleet)
        start_scheduler(fleet)
        workload_env = {  # what every workload gets, as fogmesh up gives it
            "FM_BROKER_HOST": "127.0.0.1",
            "FM_BROKER_PORT": str(fleet.port),
            "FM_USERNAME": "acme",
            "FM_PASSWORD": fleet.password("acme"),
        }
        for node in NODES:
            start_agent(fleet, node, workload_env)
        red.wait_started()
        yield Stack(fleet, red)
    finally:
        red.stop()
        fleet.stop()
        _kill_workloads(fleet)


@pytest.fixture(scope="module")
def fleet(stack: Stack) -> Fleet:
    return stack.fleet


@pytest.fixture(scope="module")
def nodered(stack: Stack) -> NodeRed:
    return stack.red


async def _fleet_ready(fleet: Fleet) -> None:
    """The scheduler leads and both nodes are online (retained state), so a deploy is placed."""
    # a standby stays silent (and a lease claim is not yet the lead): wait for the scheduler's word
    await wait_for(lambda: "scheduler leads" in fleet.log("scheduler"), 120, "the scheduler leads")
    seen: dict[str, Any] = {}
    async with aiomqtt.Client(
        "127.0.0.1",
        fleet.port,
        identifier="operator-nodered-watch",
        username="operator",
        password=fleet.password("operator"),
        timeout=30,
    ) as watch:
        await watch.subscribe("fm/v1/leases/#", qos=1)
        await watch.subscribe("fm/v1/nodes/+/state", qos=1)

        async def read() -> None:
            async for msg in watch.messages:
                with contextlib.suppress(ValueError):
                    seen[msg.topic.value] = json.loads(bytes(msg.payload))

        task = asyncio.create_task(read())
        try:
            await wait_for(
                lambda: (
                    any("scheduler" in t for t in seen if t.startswith("fm/v1/leases/"))
                    and all(
                        seen.get(f"fm/v1/nodes/{n}/state", {}).get("state") == "online"
                        for n in NODES
                    )
                ),
                120,
                f"the scheduler's lease and {NODES} online (seen: {sorted(seen)})",
            )
        finally:
            task.cancel()


async def _deploy(red: NodeRed, inject: str, path: str) -> dict[str, Any]:
    """Press the flow's deploy button until the scheduler places the app; its answer."""
    before: str | None = None

    def answered() -> bool:
        reply = red.get(path).get("reply")
        return reply is not None and reply.get("correlation_id") != before

    for _ in range(20):
        red.inject(inject)
        try:
            await wait_for(answered, 30, "the deploy answer")
        except AssertionError:
            continue  # no answer: the flow's request timed out (e.g. no scheduler led yet)
        reply: dict[str, Any] = red.get(path)["reply"]
        before = reply.get("correlation_id")
        # unschedulable: a node's hello is not read yet; timeout: an earlier press got no answer
        if reply["ok"] or reply["error"]["code"] not in ("unschedulable", "timeout"):
            return reply
        await asyncio.sleep(1)  # the scheduler has not read both nodes' hellos yet
    return dict(red.get(path)["reply"])


async def test_deploy_flow_deploys_the_sample_app_and_shows_its_results(
    fleet: Fleet, nodered: NodeRed, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # the CLI's table shows whole workload names
    try:
        await _fleet_ready(fleet)
        reply = await _deploy(nodered, "fm-deploy-inject", "/fogmesh/sample")
        assert reply["ok"], reply
        placed = {p["workload"]: p["node"] for p in reply["app"]["placements"]}
        assert set(placed) == {"nodered-sample-sensor-0", "nodered-sample-convolve-0"}, reply
        assert set(placed.values()) == set(NODES)  # anti-affinity: one node each
        # the convolver's results reach the flow's output
        await wait_for(lambda: nodered.get("/fogmesh/sample")["count"] >= 3, 120, "3 results")
        results = nodered.get("/fogmesh/sample")["results"]
        assert all(r["result"]["rows"] == 50 and r["result"]["cols"] == 50 for r in results)
        listed = await asyncio.to_thread(cli, fleet, "workloads", "--app", "nodered-sample")
        assert listed.returncode == 0, listed.stdout + listed.stderr
        for workload, node in placed.items():
            row = next((line for line in listed.stdout.splitlines() if workload in line), "")
            assert node in row, listed.stdout
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{nodered.log()[-3000:]}\n{fleet.logs()}") from None


async def test_simulated_sensor_feeds_an_app_and_reads_its_output(
    fleet: Fleet, nodered: NodeRed
) -> None:
    try:
        await _fleet_ready(fleet)
        reply = await _deploy(nodered, "fm-sensor-deploy", "/fogmesh/sensor")
        assert reply["ok"], reply
        await wait_for(lambda: len(nodered.get("/fogmesh/sensor")["results"]) >= 2, 120, "results")
        result = nodered.get("/fogmesh/sensor")["results"][-1]
        # the flow's 10x10 readings, convolved by the app on a fogmesh node
        assert (result["result"]["rows"], result["result"]["cols"]) == (10, 10), result
        assert result["ops"]["multiplications"] == 2 * 100, result
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{nodered.log()[-3000:]}\n{fleet.logs()}") from None


async def test_alert_flow_fires_when_a_node_is_killed(fleet: Fleet, nodered: NodeRed) -> None:
    await _fleet_ready(fleet)  # edge-2 is online (also when this test runs first)
    agent = fleet.procs["agent-edge-2"]
    os.kill(agent.pid, signal.SIGKILL)  # a power cut: the broker fires the agent's will
    try:
        await wait_for(
            lambda: any(
                a["kind"] == "node-lost" and a["node"] == "edge-2"
                for a in nodered.get("/fogmesh/alerts")["alerts"]
            ),
            120,
            "the node-lost alert",
        )
        alert = next(
            a for a in nodered.get("/fogmesh/alerts")["alerts"] if a["kind"] == "node-lost"
        )
        assert alert["alert"].startswith("node edge-2 lost"), alert
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{nodered.log()[-3000:]}\n{fleet.logs()}") from None
