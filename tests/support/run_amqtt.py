"""Run a bare amqtt broker on a port: the tests' plain embedded broker.

Any client that sends a username gets in (amqtt keeps queued messages only for sessions it
does not count as anonymous, and every fogmesh client has a username).

Usage: python -m tests.support.run_amqtt PORT
"""

from __future__ import annotations

import asyncio
import signal
import sys


async def _serve(port: int) -> None:
    from amqtt.broker import Broker

    config = {
        "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": False}},
    }
    broker = Broker(config)
    await broker.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("ready", flush=True)
    await stop.wait()
    await broker.shutdown()


if __name__ == "__main__":
    asyncio.run(_serve(int(sys.argv[1])))
