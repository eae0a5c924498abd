"""The agent process: one MQTT client inside a namespace, driven by JSON lines on stdin.

Run as ``python -m tests.support.netns agent ...`` (with ``ip netns exec``;
:class:`~tests.support.netns_procs.NsAgent` is the test's side): commands (``sub``, ``pub``; any
other, such as ``ping``, does nothing) arrive as JSON lines on stdin, each answered by a ``reply``
line (with an ``error`` if it failed), and every message received is written as a ``msg`` line on
stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

__all__ = ["main"]


def _emit(data: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(data) + "\n")
    sys.stdout.flush()


async def _agent(opts: argparse.Namespace) -> None:
    import aiomqtt

    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    async with aiomqtt.Client(
        opts.host,
        opts.port,
        username=opts.user,
        password=opts.password,
        identifier=opts.ident,
        clean_session=not opts.persistent,
        timeout=30,
        max_queued_outgoing_messages=0,
        max_inflight_messages=100,
    ) as client:

        async def receive() -> None:
            async for msg in client.messages:
                raw = msg.payload
                text = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
                _emit(
                    {"kind": "msg", "topic": msg.topic.value, "payload": text, "retain": msg.retain}
                )

        receiver = asyncio.create_task(receive())
        async for line in stdin:
            cmd = json.loads(line)
            reply: dict[str, Any] = {"kind": "reply", "id": cmd["id"]}
            try:
                if cmd["op"] == "sub":
                    await client.subscribe(cmd["filter"], qos=cmd["qos"])
                elif cmd["op"] == "pub":
                    for payload in cmd["payloads"]:
                        await client.publish(
                            cmd["topic"],
                            payload.encode(),
                            qos=cmd["qos"],
                            retain=bool(cmd.get("retain")),
                        )
                        if cmd.get("gap"):
                            await asyncio.sleep(cmd["gap"])
            except Exception as exc:  # reported to the test, which fails with it
                reply["error"] = f"{type(exc).__name__}: {exc}"
            _emit(reply)
        receiver.cancel()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.support.netns")
    sub = parser.add_subparsers(dest="cmd", required=True)
    agent = sub.add_parser("agent", help="one MQTT client driven by JSON lines on stdin")
    agent.add_argument("--host", required=True)
    agent.add_argument("--port", type=int, required=True)
    agent.add_argument("--user", required=True)
    agent.add_argument("--password", required=True)
    agent.add_argument("--ident", required=True)
    agent.add_argument("--persistent", action="store_true")
    opts = parser.parse_args()
    asyncio.run(_agent(opts))
