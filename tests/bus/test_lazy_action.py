"""An action may name its request model by a function, called at the action's first request."""

from __future__ import annotations

from typing import Any

from fogmesh.bus import Action, MessageContext, RequestRouter
from fogmesh.protocol import AckReply, ErrorCode, RestartCommand, topics
from tests.bus.test_router import _request, serving
from tests.support.brokers import BrokerProcess
from tests.support.buses import unique


async def test_a_model_named_by_a_function_is_resolved_at_the_first_request(
    broker: BrokerProcess,
) -> None:
    asked: list[str] = []

    def model() -> type[RestartCommand]:
        asked.append("model")
        return RestartCommand

    async def restart(cmd: RestartCommand, ctx: MessageContext) -> None:
        await ctx.reply(AckReply.to(cmd, message=cmd.workload))

    actions: dict[str, Action[Any]] = {"restart": Action(model, restart)}
    router = RequestRouter(topics.api_filter("things"), actions, what="things action")
    async with serving(broker, router) as (client, replies):
        mine = topics.reply("acme", unique("r"))
        await replies.listen(mine)
        assert asked == []  # nothing asked for the model before a request came
        restart_topic = topics.api("acme", "things", "restart")
        await client.publish_raw(restart_topic, _request(mine, "ok", workload="w1"))
        await client.publish_raw(restart_topic, _request(mine, "bad", workload="w", extra=1))
        assert (await replies.answer("ok"))["message"] == "w1"
        bad = (await replies.answer("bad"))["error"]
        assert bad["code"] == ErrorCode.INVALID_PAYLOAD  # validated as the model it returned
        assert [f["loc"] for f in bad["fields"]] == ["extra"]
    assert asked == ["model", "model"]


def test_a_model_class_is_its_own_request_model() -> None:
    async def handler(cmd: RestartCommand, ctx: MessageContext) -> None:
        del cmd, ctx

    assert Action(RestartCommand, handler).request_model() is RestartCommand
