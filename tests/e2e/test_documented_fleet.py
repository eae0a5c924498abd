"""A small fleet built from the documentation alone, without ``fogmesh up``'s code.

A mesh file written as docs/mesh.md shows (accounts hashed with ``fogmesh-broker
hash-password``, the built-in roles), ``fogmesh-broker run``, the registry, the scheduler and one
node agent started with the commands and configuration keys their docs give, each as its own
process with its own account. A tenant deploys an app with the ``fogmesh`` CLI; the events of
every role (the scheduler's app events, the agent's workload-state events, the registry's
node-joined) must reach the tenant's subscriber (its own events only) and an operator's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from tests.support.documented_fleet import Fleet, cli, serving_fleet, start_services, write_private
from tests.support.mqtt import collect, wait_for

TOKEN = secrets.token_hex(6)  # marks this test's workload processes, to clean up only those
MANIFEST = f"""\
name: hello
components:
  - name: greeter
    runtime: native
    executable: /bin/sh
    command: ["-c", "sleep 600; : {TOKEN}"]
    requests: {{cpu: 50m, memory: 16Mi}}
"""


def _kinds(messages: list[aiomqtt.Message]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for msg in messages:
        with contextlib.suppress(ValueError, TypeError):
            event = json.loads(bytes(msg.payload))
            found.setdefault(str(event.get("kind")), []).append(event)
    return found


@pytest.fixture(params=["amqtt", pytest.param("mosquitto", marks=pytest.mark.mosquitto)])
def fleet(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Fleet]:
    """The documented broker of ``request.param``, serving."""
    with serving_fleet(tmp_path, request.param, TOKEN) as made:
        yield made


async def test_a_fleet_from_the_docs_alone(fleet: Fleet) -> None:
    at_tenant: list[aiomqtt.Message] = []
    at_operator: list[aiomqtt.Message] = []
    async with (
        fleet.client("acme", "acme-watch") as tenant,
        fleet.client("operator", "operator-watch") as operator,
    ):
        await tenant.subscribe("fm/v1/events/tenants/acme/#", qos=1)
        await tenant.subscribe("fm/v1/events/fleet/#", qos=1)  # refused: not the tenant's
        await operator.subscribe("fm/v1/events/#", qos=1)
        tasks = [
            asyncio.create_task(collect(tenant, at_tenant)),
            asyncio.create_task(collect(operator, at_operator)),
        ]
        start_services(fleet)

        def seen(sink: list[aiomqtt.Message], kind: str) -> bool:
            return kind in _kinds(sink)

        try:
            await wait_for(lambda: seen(at_operator, "node-joined"), 120, "node-joined")
            app = write_private(fleet.root / "hello.yaml", MANIFEST)
            # the scheduler may not have the node's hello yet: a refused deploy changes nothing
            for _ in range(30):
                done = await asyncio.to_thread(cli, fleet, "deploy", str(app))
                # unschedulable: the node is not known yet; no reply: no scheduler leads yet
                if done.returncode == 0 or not (
                    "unschedulable" in done.stderr or "no reply" in done.stderr
                ):
                    break
                await asyncio.sleep(1)
            assert done.returncode == 0, done.stdout + done.stderr
            for who, sink in (("tenant", at_tenant), ("operator", at_operator)):
                for event in ("app-deployed", "workload-state"):
                    await wait_for(partial(seen, sink, event), 120, f"{event} at the {who}")
            done = await asyncio.to_thread(cli, fleet, "delete", "hello")
            assert done.returncode == 0, done.stdout + done.stderr
            await wait_for(
                lambda: any(
                    e.get("data", {}).get("to") == "removed"
                    for e in _kinds(at_tenant).get("workload-state", [])
                ),
                120,
                "the workload removed",
            )
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{fleet.logs()}") from None
        finally:
            for t in tasks:
                t.cancel()
    tenant_kinds, operator_kinds = _kinds(at_tenant), _kinds(at_operator)
    # every role's events reach the operator; the tenant gets its own only
    assert {"node-joined", "app-deployed", "workload-state"} <= operator_kinds.keys()
    assert {"app-deployed", "workload-state"} <= tenant_kinds.keys()
    assert "node-joined" not in tenant_kinds
    assert all(e.get("source", "").startswith("edge-1") for e in tenant_kinds["workload-state"])
    assert all(m.topic.value.startswith("fm/v1/events/tenants/acme/") for m in at_tenant)
