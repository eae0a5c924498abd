"""The security matrix, a tenant against another: acme on globex's app, workload and session.

The fleet (one per broker kind), the table and the helpers are matrix_cases.py's; how a row
tells that nothing happened is in test_matrix.py's docstring.
"""

from __future__ import annotations

import asyncio
import contextlib

import aiomqtt
import pytest

from fogmesh.protocol import topics
from tests.security.matrix_cases import (
    APP_ATTACKS,
    VICTIM,
    WORKLOAD_ATTACKS,
    peer,
    watching,
)
from tests.security.matrix_cases import actual_workloads as _actual
from tests.security.matrix_cases import audits_of as _audits
from tests.security.matrix_cases import victim_untouched as _victim_untouched
from tests.support.documented_fleet import Fleet
from tests.support.mqtt import collect

# the module-scoped fleet is made once per worker that runs any of its tests: keep them on one
# (a group of this module's own: its fleet shares nothing fixed with test_matrix.py's)
pytestmark = pytest.mark.xdist_group("security-matrix-tenants")


@pytest.mark.parametrize("by", ["topic", "tenant-field"])
async def test_a_tenant_cannot_touch_anothers_app(fleet: Fleet, by: str) -> None:
    """acme deploys over, updates, deletes and scales globex's ledger, on globex's topic (the
    broker refuses the publish: no service ever gets it) or on its own naming globex in the
    request's ``tenant`` (refused); globex's app and workload are as they were."""
    before = await _actual(fleet)
    async with (
        watching(fleet, topics.audit_filter()) as audits,
        peer(fleet, "globex") as globex,
        peer(fleet, "acme") as acme,
    ):
        app_was = await globex.ask(topics.api("globex", "apps", "get"), {"app": "ledger"})
        for action, attack in APP_ATTACKS.items():
            body = {**attack, "tenant": "globex"}
            if by == "topic":
                sent = await acme.send(topics.api("globex", "apps", action), body)
                await acme.settle()
                assert _audits(audits, sent) == [], f"a service got {action} on globex's topic"
                assert acme.replies(sent) == []
            else:
                reply = await acme.ask(topics.api("acme", "apps", action), body)
                assert reply["ok"] is False, reply
                assert reply["error"]["code"] in {"unauthorised", "not_found"}, reply
        app_now = await globex.ask(topics.api("globex", "apps", "get"), {"app": "ledger"})
    assert app_now["app"] == app_was["app"]
    await _victim_untouched(fleet, before)


@pytest.mark.parametrize("by", ["topic", "tenant-field", "own"])
async def test_a_tenant_cannot_command_anothers_workload(fleet: Fleet, by: str) -> None:
    """acme reads the logs of, stops, starts, restarts, uploads to and downloads from globex's
    workload: on globex's topic (never delivered), on its own naming globex (``unauthorised``)
    or on its own as if the workload were acme's (``not_found``, as for an absent one); the
    workload keeps running, untouched."""
    before = await _actual(fleet)
    async with watching(fleet, topics.audit_filter()) as audits, peer(fleet, "acme") as acme:
        for action, extra in WORKLOAD_ATTACKS.items():
            body = {"workload": VICTIM, **extra}
            if by == "topic":
                topic = topics.api("globex", "workloads", action)
                sent = await acme.send(topic, body, tenant="globex")
                await acme.settle()
                assert _audits(audits, sent) == [], f"a service got {action} on globex's topic"
                assert acme.replies(sent) == []
            else:
                claimed = "globex" if by == "tenant-field" else "acme"
                topic = topics.api("acme", "workloads", action)
                reply = await acme.ask(topic, body, tenant=claimed)
                assert reply["ok"] is False, reply
                assert reply["error"]["code"] in {"unauthorised", "not_found"}, reply
    await _victim_untouched(fleet, before)


@pytest.mark.parametrize(
    ("ident", "persistent"), [("acme-cli", False), ("acme-cli", True), ("acme/cli", False)]
)
async def test_a_tenant_cannot_take_over_anothers_session(
    fleet: Fleet, ident: str, persistent: bool
) -> None:
    """globex connects with acme's client id (a clean or a persistent session, as a bus
    keeps): the embedded broker refuses it and acme's session goes on receiving; Mosquitto
    lets it connect (a client id is no credential there), even resume acme's session, but it
    reads none of acme's replies."""
    stolen: list[aiomqtt.Message] = []
    async with peer(fleet, "acme", "acme-cli", persistent=persistent) as acme:
        await acme.settle()
        thief = fleet.client("globex", ident, persistent=persistent)
        if fleet.kind == "amqtt":
            with pytest.raises(aiomqtt.MqttError):
                async with thief:
                    pass
            # acme's session is still its own (a reply takes well under a second when it works)
            await acme.settle(wait=30.0)
            return
    async with thief:
        for topic_filter in ("fm/v1/reply/acme/#", f"fm/v1/reply/+/{ident}", "fm/v1/reply/#"):
            with contextlib.suppress(aiomqtt.MqttError):
                await thief.subscribe(topic_filter, qos=1)
        task = asyncio.create_task(collect(thief, stolen))
        try:
            async with peer(fleet, "acme") as acme:
                # answered on acme-cli's reply topic, which a resumed session subscribed
                await acme.send(
                    topics.api("acme", "apps", "list"),
                    {},
                    reply_to=topics.reply("acme", "acme-cli"),
                )
                await acme.settle()
            async with peer(fleet, "globex") as globex:
                await globex.settle()  # thief's subscriptions are in place by now, too
        finally:
            task.cancel()
    assert [
        m.topic.value for m in stolen if not m.topic.value.startswith("fm/v1/reply/globex/")
    ] == []
