"""A session taken over by a new connection of the same client gets what is queued for it, at once.

MQTT hands a client id to its newest connection. A bridge link whose WAN was cut silently
reconnects while the broker still counts the old connection as live, so the broker takes the
session over: the old connection's teardown must not mark the (now live) session disconnected,
or everything published for it afterwards waits in its offline queue for the next reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import aiomqtt

from tests.support.mesh import MeshProcess, start_alone
from tests.support.mqtt import client, collect, wait_for

N = 100


async def _until_closed(c: aiomqtt.Client) -> None:
    """Read ``c`` until the broker closes it (the take-over)."""
    with contextlib.suppress(aiomqtt.MqttError):
        async for _ in c.messages:
            pass


async def test_taken_over_session_gets_every_message_at_once(
    tmp_path: Path, procs: list[MeshProcess]
) -> None:
    port = start_alone(tmp_path, procs)[1]
    for rnd in range(5):
        got: list[aiomqtt.Message] = []
        want = {f"a{rnd}-{i}".encode() for i in range(N)}
        old = client(port, "bridge", ident="fmb-hub-x-r", clean=False)
        await old.__aenter__()
        await old.subscribe("cmd/#", qos=1)
        closed = asyncio.create_task(_until_closed(old))
        async with client(port) as pub:
            await pub.publish("cmd/before", f"b{rnd}".encode(), qos=1)
            # the same client id connects again while the old connection is still open
            async with client(port, "bridge", ident="fmb-hub-x-r", clean=False) as new:
                task = asyncio.create_task(collect(new, got))
                for i in range(N):
                    await pub.publish("cmd/after", f"a{rnd}-{i}".encode(), qos=1)
                    if i % 10 == 0:
                        await asyncio.sleep(0.05)

                def arrived(got: list[aiomqtt.Message] = got, want: set[bytes] = want) -> bool:
                    return want <= {m.payload for m in got if isinstance(m.payload, bytes)}

                await wait_for(
                    arrived,
                    30,
                    f"round {rnd}: all {N} messages at the session that took over",
                )
                task.cancel()
        await closed
        with contextlib.suppress(aiomqtt.MqttError):
            await old.__aexit__(None, None, None)
