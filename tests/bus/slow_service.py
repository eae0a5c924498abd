"""A bus client process with a slow handler, for the acknowledge-after-handling test.

Usage: python -m tests.bus.slow_service PORT CLIENT_ID TOPIC OUTFILE DELAY_S [USER PASSWORD]

Each message on TOPIC is appended to OUTFILE (its payload, one line) and the handler then
sleeps DELAY_S, so messages queue up behind it. It prints "ready" once connected. Without USER
it connects as its client id, without a password.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from fogmesh.bus import Bus, BusConfig, MessageContext, RawMessage
from fogmesh.service import configure_logging


async def _main(
    port: int, client_id: str, topic: str, out: Path, delay: float, *, account: list[str]
) -> None:
    configure_logging("warning")

    async def on_message(message: RawMessage, ctx: MessageContext) -> None:
        with out.open("ab") as file:
            file.write(message.payload + b"\n")
        await asyncio.sleep(delay)

    username, password = (account[0], account[1]) if account else (client_id, None)
    config = BusConfig(
        port=port, client_id=client_id, username=username, password=password, keepalive=5
    )
    async with Bus(config) as bus:
        bus.subscribe(topic, RawMessage, on_message)
        await bus.wait_connected(timeout=15)
        print("ready", flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(
        _main(
            int(sys.argv[1]),
            sys.argv[2],
            sys.argv[3],
            Path(sys.argv[4]),
            float(sys.argv[5]),
            account=sys.argv[6:8],
        )
    )
