"""Request / reply through the bus, and what happens to bad input and failing handlers."""

from __future__ import annotations

import asyncio
import json

import aiomqtt
import pytest

from fogmesh.bus import Bus, MessageContext, Refusal
from fogmesh.protocol import (
    AckReply,
    BusError,
    ErrorCode,
    ErrorReply,
    LogsCommand,
    LogsReply,
    RemoteError,
    RequestTimeout,
    topics,
)
from tests.support.brokers import BrokerProcess
from tests.support.buses import bus_config, eventually, unique


async def test_request_gets_its_reply(broker: BrokerProcess) -> None:
    node = unique("node")

    async def on_logs(cmd: LogsCommand, ctx: MessageContext) -> None:
        await ctx.reply(LogsReply.to(cmd, workload=cmd.workload, lines=["a"] * cmd.tail))

    async with Bus(bus_config(broker)) as server, Bus(bus_config(broker)) as client:
        server.subscribe(topics.node_cmd(node, "logs"), LogsCommand, on_logs)
        await server.wait_connected(timeout=15)
        answer = await client.request(
            topics.node_cmd(node, "logs"), LogsCommand(workload="w1", tail=3), LogsReply, timeout=10
        )
    assert answer.lines == ["a", "a", "a"]
    assert answer.workload == "w1"


async def test_request_times_out_when_nobody_answers(broker: BrokerProcess) -> None:
    async with Bus(bus_config(broker)) as client:
        await client.wait_connected(timeout=15)
        with pytest.raises(RequestTimeout) as info:
            await client.request(
                topics.node_cmd(unique("nobody"), "logs"),
                LogsCommand(workload="w1"),
                LogsReply,
                timeout=0.5,
            )
    assert info.value.timeout == 0.5


async def test_refusal_becomes_remote_error(broker: BrokerProcess) -> None:
    node = unique("node")

    async def on_logs(cmd: LogsCommand, ctx: MessageContext) -> None:
        raise Refusal(ErrorCode.UNAUTHORISED, "not your workload")

    async with Bus(bus_config(broker)) as server, Bus(bus_config(broker)) as client:
        server.subscribe(topics.node_cmd(node, "logs"), LogsCommand, on_logs)
        await server.wait_connected(timeout=15)
        with pytest.raises(RemoteError) as info:
            await client.request(
                topics.node_cmd(node, "logs"), LogsCommand(workload="w"), LogsReply, timeout=10
            )
    assert info.value.code is ErrorCode.UNAUTHORISED


async def test_invalid_payload_gets_error_reply_and_loop_survives(broker: BrokerProcess) -> None:
    node = unique("node")
    handled: list[str] = []

    async def on_logs(cmd: LogsCommand, ctx: MessageContext) -> None:
        handled.append(cmd.workload)
        await ctx.reply(AckReply.to(cmd))

    reply_to = topics.reply("raw", unique("raw"))
    bad_payloads = [
        json.dumps({"reply_to": reply_to, "correlation_id": "c1", "workload": "w", "tail": -5}),
        json.dumps({"reply_to": reply_to, "correlation_id": "c2", "workload": "a/b"}),
        json.dumps({"reply_to": reply_to, "correlation_id": "c3", "workload": "w", "nope": 1}),
        "not json at all {",
        json.dumps([1, 2, 3]),
    ]
    async with Bus(bus_config(broker)) as server:
        server.subscribe(topics.node_cmd(node, "logs"), LogsCommand, on_logs)
        await server.wait_connected(timeout=15)
        async with aiomqtt.Client("127.0.0.1", broker.port, username="raw") as raw:
            await raw.subscribe(reply_to, qos=1)
            for payload in bad_payloads:
                await raw.publish(topics.node_cmd(node, "logs"), payload, qos=1)
            good = {"reply_to": reply_to, "correlation_id": "ok1", "workload": "w9"}
            await raw.publish(topics.node_cmd(node, "logs"), json.dumps(good), qos=1)
            replies: dict[str, dict[str, object]] = {}
            async for message in raw.messages:
                assert isinstance(message.payload, bytes)
                data = json.loads(message.payload)
                replies[data["correlation_id"]] = data
                if len(replies) == 4:
                    break
    for corr, field in (("c1", "tail"), ("c2", "workload"), ("c3", "nope")):
        error = ErrorReply.model_validate(replies[corr])
        assert error.error.code is ErrorCode.INVALID_PAYLOAD
        assert any(f.loc == field for f in error.error.fields), error.error
    assert replies["ok1"]["ok"] is True
    assert handled == ["w9"]


async def test_handler_that_raises_does_not_stop_the_loop(broker: BrokerProcess) -> None:
    node = unique("node")
    calls: list[str] = []

    async def on_logs(cmd: LogsCommand, ctx: MessageContext) -> None:
        calls.append(cmd.workload)
        if cmd.workload == "boom":
            raise RuntimeError("handler bug")
        await ctx.reply(LogsReply.to(cmd, workload=cmd.workload, lines=[]))

    topic = topics.node_cmd(node, "logs")
    async with Bus(bus_config(broker)) as server, Bus(bus_config(broker)) as client:
        server.subscribe(topic, LogsCommand, on_logs)
        await server.wait_connected(timeout=15)
        with pytest.raises(RemoteError) as info:
            await client.request(topic, LogsCommand(workload="boom"), LogsReply, timeout=10)
        assert info.value.code is ErrorCode.INTERNAL
        answer = await client.request(topic, LogsCommand(workload="fine"), LogsReply, timeout=10)
        await eventually(lambda: calls == ["boom", "fine"])
    assert answer.workload == "fine"


async def test_a_cancelled_handler_does_not_end_its_subscription(broker: BrokerProcess) -> None:
    node = unique("node")
    handled: list[str] = []
    done = asyncio.get_running_loop().create_future()
    done.cancel()

    async def on_logs(cmd: LogsCommand, ctx: MessageContext) -> None:
        handled.append(cmd.workload)
        if cmd.workload == "stray-cancel":
            await done  # raises CancelledError inside the handler, not a cancel of the bus
        await ctx.reply(LogsReply.to(cmd, workload=cmd.workload, lines=[]))

    topic = topics.node_cmd(node, "logs")
    async with Bus(bus_config(broker)) as server, Bus(bus_config(broker)) as client:
        server.subscribe(topic, LogsCommand, on_logs)
        await server.wait_connected(timeout=15)
        await client.wait_connected(timeout=15)
        await client.publish(topic, LogsCommand(workload="stray-cancel"))
        answer = await client.request(topic, LogsCommand(workload="after"), LogsReply, timeout=10)
    assert answer.workload == "after"
    assert handled == ["stray-cancel", "after"]


async def test_closing_the_bus_fails_pending_requests_with_bus_error(
    broker: BrokerProcess,
) -> None:
    async with Bus(bus_config(broker)) as client:
        await client.wait_connected(timeout=15)
        pending = asyncio.create_task(
            client.request(
                topics.node_cmd(unique("n"), "logs"),
                LogsCommand(workload="w"),
                LogsReply,
                timeout=30,
            )
        )
        await asyncio.sleep(0.3)
    with pytest.raises(BusError):
        await pending


async def test_background_tasks_end_with_the_bus(broker: BrokerProcess) -> None:
    started, ended = asyncio.Event(), asyncio.Event()

    async def on_connect(bus: Bus) -> None:
        started.set()
        try:
            await asyncio.Event().wait()  # never returns by itself
        finally:
            ended.set()

    bus = Bus(bus_config(broker))
    bus.on_connect(on_connect)
    async with bus:
        await asyncio.wait_for(started.wait(), 15)
    assert ended.is_set()  # cancelled and awaited by the bus's TaskGroup on exit
