"""The bus's request router: one behaviour for every service, and its defences, on both brokers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
import structlog
from structlog.typing import EventDict

from fogmesh.bus import (
    Action,
    Bus,
    MessageContext,
    RawMessage,
    Refusal,
    RequestRouter,
    reply_allowed,
    reply_topic_for,
)
from fogmesh.protocol import AckReply, ErrorCode, LogsCommand, RestartCommand, topics
from tests.support.brokers import BrokerProcess
from tests.support.buses import bus_config, eventually, unique


@dataclass
class Served:
    """What the router's handlers saw, and whether the guard lets requests through."""

    seen: list[str] = field(default_factory=list)
    open: bool = True


def _router(served: Served, **kwargs: Any) -> RequestRouter:
    async def restart(cmd: RestartCommand, ctx: MessageContext) -> None:
        served.seen.append(cmd.workload)
        if cmd.workload == "refuse":
            raise Refusal(ErrorCode.NOT_FOUND, "no such workload")
        if cmd.workload == "crash":
            raise RuntimeError("secret-detail-of-tenant-b")
        await ctx.reply(AckReply.to(cmd, message=cmd.workload))

    async def logs(cmd: LogsCommand, ctx: MessageContext) -> None:
        await ctx.reply(AckReply.to(cmd, message="logs"))

    actions: dict[str, Action[Any]] = {
        "restart": Action(RestartCommand, restart),
        "logs": Action(LogsCommand, logs),
    }
    return RequestRouter(
        topics.api_filter("things"), actions, what="things action",
        guard=lambda: served.open, **kwargs,
    )  # fmt: skip


class Replies:
    """A client listening on reply topics, keeping every answer by correlation id."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.by_id: dict[str, dict[str, Any]] = {}
        self.on_topic: dict[str, list[dict[str, Any]]] = {}

    async def listen(self, *reply_topics: str) -> None:
        async def on(msg: RawMessage, ctx: MessageContext) -> None:
            data = json.loads(msg.payload)
            self.by_id[data.get("correlation_id", "?")] = data
            self.on_topic.setdefault(ctx.topic, []).append(data)

        for topic in reply_topics:
            self.bus.subscribe(topic, RawMessage, on)
        await asyncio.sleep(0.5)  # let the subscriptions reach the broker

    async def answer(self, correlation_id: str) -> dict[str, Any]:
        await eventually(lambda: correlation_id in self.by_id, what=correlation_id)
        return self.by_id[correlation_id]


@asynccontextmanager
async def serving(
    broker: BrokerProcess, router: RequestRouter, **server_config: Any
) -> AsyncIterator[tuple[Bus, Replies]]:
    async with (
        Bus(bus_config(broker, **server_config)) as server,
        Bus(bus_config(broker)) as client,
    ):
        router.attach(server)
        await server.wait_connected(timeout=15)
        await client.wait_connected(timeout=15)
        yield client, Replies(client)


def _request(reply_to: str, corr: str, **body: Any) -> bytes:
    return json.dumps({"reply_to": reply_to, "correlation_id": corr, **body}).encode()


async def test_unknown_action_bad_input_refusal_and_internal(broker: BrokerProcess) -> None:
    served = Served()
    async with serving(broker, _router(served)) as (client, replies):
        mine = topics.reply("acme", unique("r"))
        await replies.listen(mine)
        restart = topics.api("acme", "things", "restart")
        await client.publish_raw(topics.api("acme", "things", "bogus"), _request(mine, "u1"))
        await client.publish_raw(restart, _request(mine, "b1", workload="w", extra=1))
        await client.publish_raw(restart, _request(mine, "r1", workload="refuse"))
        await client.publish_raw(restart, _request(mine, "i1", workload="crash"))
        unknown = (await replies.answer("u1"))["error"]
        assert unknown["code"] == ErrorCode.INVALID_REQUEST
        assert unknown["details"]["known"] == ["restart", "logs"]
        assert "restart" in unknown["message"]
        bad = (await replies.answer("b1"))["error"]
        assert bad["code"] == ErrorCode.INVALID_PAYLOAD
        assert [f["loc"] for f in bad["fields"]] == ["extra"]
        assert (await replies.answer("r1"))["error"]["code"] == ErrorCode.NOT_FOUND
        internal = (await replies.answer("i1"))["error"]
        assert internal["code"] == ErrorCode.INTERNAL
        assert "secret-detail" not in json.dumps(internal)
    assert served.seen == ["refuse", "crash"]  # the bad input never reached a handler


async def test_a_closed_guard_answers_nothing(broker: BrokerProcess) -> None:
    served = Served(open=False)
    async with serving(broker, _router(served)) as (client, replies):
        mine = topics.reply("acme", unique("r"))
        await replies.listen(mine)
        restart = topics.api("acme", "things", "restart")
        await client.publish_raw(restart, _request(mine, "standby", workload="w"))
        await client.publish_raw(topics.api("acme", "things", "bogus"), _request(mine, "s2"))
        await asyncio.sleep(1.0)  # a standby that answered would have done so by now
        served.open = True
        await client.publish_raw(restart, _request(mine, "leader", workload="w2"))
        await replies.answer("leader")
    assert set(replies.by_id) == {"leader"}
    assert served.seen == ["w2"]


@contextmanager
def logged_events() -> Iterator[list[str]]:
    """The events logged inside the block (service loggers are cached on first use, so
    ``structlog.testing.capture_logs`` cannot see them: this joins their processor chain)."""
    events: list[str] = []
    processors = structlog.get_config()["processors"]

    def record(_logger: object, _name: str, event_dict: EventDict) -> EventDict:
        events.append(str(event_dict.get("event")))
        return event_dict

    processors.insert(0, record)
    try:
        yield events
    finally:
        processors.remove(record)


async def test_oversized_and_deeply_nested_payloads_are_answered(broker: BrokerProcess) -> None:
    served = Served()
    async with serving(broker, _router(served), max_payload=8192) as (client, replies):
        mine = topics.reply("acme", unique("r"))
        await replies.listen(mine)
        restart = topics.api("acme", "things", "restart")
        big = _request(mine, "big", workload="w", pad="x" * 10_000)
        deep = _request(mine, "deep", workload="w")[:-1] + b', "x": ' + b"[" * 3000
        deep += b"]" * 3000 + b"}"
        with logged_events() as events:
            await client.publish_raw(restart, big)
            await client.publish_raw(restart, deep)
            await client.publish_raw(restart, b"[" * 3000 + b"]" * 3000)  # nowhere to answer
            await client.publish_raw(restart, _request(mine, "after", workload="ok"))
            oversized = (await replies.answer("big"))["error"]
            nested = (await replies.answer("deep"))["error"]
            await replies.answer("after")
        assert oversized["code"] == ErrorCode.INVALID_PAYLOAD
        assert oversized["details"]["limit"] == 8192
        assert nested["code"] == ErrorCode.INVALID_PAYLOAD
        assert events.count("payload over the size limit") == 1
        assert events.count("invalid payload") == 2  # the nested one, and the one without reply_to
    assert served.seen == ["ok"]


async def test_a_replayed_request_is_handled_and_answered_once(broker: BrokerProcess) -> None:
    served = Served()
    async with serving(broker, _router(served)) as (client, replies):
        mine = topics.reply("acme", unique("r"))
        await replies.listen(mine)
        restart = topics.api("acme", "things", "restart")
        once = RestartCommand(workload="once", reply_to=mine, correlation_id="c1")
        await client.publish(restart, once)
        await client.publish(restart, once)  # the same id and correlation id: a replay
        retry = once.model_copy(update={"correlation_id": "c2", "workload": "retry"})
        await client.publish(restart, retry)  # the same id, a new correlation id: a new request
        await replies.answer("c2")
        await asyncio.sleep(0.5)
    assert served.seen == ["once", "retry"]
    assert [r["correlation_id"] for r in replies.on_topic[mine]] == ["c1", "c2"]


async def test_a_flooding_tenant_is_throttled_and_another_is_not(broker: BrokerProcess) -> None:
    served = Served()
    async with serving(broker, _router(served, rate_per_s=1.0, burst=3)) as (client, replies):
        flood, calm = topics.reply("flood", unique("r")), topics.reply("calm", unique("r"))
        await replies.listen(flood, calm)
        for n in range(40):
            await client.publish_raw(
                topics.api("flood", "things", "restart"), _request(flood, f"f{n}", workload="f")
            )
        await client.publish_raw(
            topics.api("calm", "things", "restart"), _request(calm, "calm", workload="calm")
        )
        assert (await replies.answer("calm"))["ok"] is True
        await eventually(lambda: len(replies.on_topic.get(flood, [])) == 40, what="40 answers")
    throttled = [r for r in replies.on_topic[flood] if not r["ok"]]
    assert len(throttled) >= 30
    assert all(r["error"]["code"] == ErrorCode.UNAVAILABLE for r in throttled)
    assert all(r["error"]["details"]["retry_after_s"] > 0 for r in throttled)
    assert "calm" in served.seen


async def test_replies_go_only_to_the_requesters_reply_topics(broker: BrokerProcess) -> None:
    served = Served()
    async with serving(broker, _router(served)) as (client, replies):
        mine, other = topics.reply("acme", unique("r")), topics.reply("other", unique("r"))
        desired = topics.node(unique("n"), "desired")
        await replies.listen(mine, other, desired)
        restart = topics.api("acme", "things", "restart")
        await client.publish_raw(restart, _request(other, "x1", workload="a"))
        await client.publish_raw(restart, _request(desired, "x2", workload="b"))
        await client.publish_raw(restart, _request(other, "x3", workload="w", nope=1))
        await client.publish_raw(restart, _request(mine, "ok", workload="c"))
        await replies.answer("ok")
        await asyncio.sleep(0.5)
        # the bus's own requests name a reply topic of the request's tenant
        answer = await client.request(
            topics.api("acme", "things", "logs"), LogsCommand(workload="w"), AckReply, timeout=10
        )
    assert answer.message == "logs"
    assert set(replies.by_id) == {"ok"}
    assert served.seen == ["a", "b", "c"]  # handled, but never answered off the reply tree


@pytest.mark.parametrize(
    ("request_topic", "reply_to", "allowed"),
    [
        ("fm/v1/api/acme/apps/list", "fm/v1/reply/acme/cli", True),
        ("fm/v1/api/acme/apps/list", "fm/v1/reply/other/cli", False),
        ("fm/v1/api/acme/apps/list", "fm/v1/reply/cli", False),
        ("fm/v1/api/acme/apps/list", "fm/v1/nodes/n1/desired", False),
        ("fm/v1/nodes/n1/cmd/logs", "fm/v1/reply/operator/cli", True),
        ("fm/v1/nodes/n1/cmd/logs", "fm/v1/data/acme/app/out", False),
        ("fm/v1/leases/scheduler", "fm/v1/reply/sched-1/sched-1", True),
    ],
)
def test_the_reply_rule(request_topic: str, reply_to: str, allowed: bool) -> None:
    assert reply_allowed(request_topic, reply_to) is allowed
    assert reply_topic_for(request_topic, username="op", client_id="cli") == (
        "fm/v1/reply/acme/cli" if "/api/" in request_topic else "fm/v1/reply/op/cli"
    )
    assert reply_topic_for("fm/v1/nodes/n/cmd/x", username=None, client_id="c") == (
        "fm/v1/reply/c/c"
    )
