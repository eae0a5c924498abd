"""A rogue on the LAN: announces itself as a fogmesh site broker and presents its own certificate.

``python -m tests.agent.rogue_broker --host H --port P --cert C --key K --fingerprint FP
--site S`` announces ``_fogmesh-mqtt._tcp`` (the broker's own announcement code) claiming
fingerprint ``FP`` (the real broker's, say) and site ``S``, and completes TLS handshakes on
``H:P`` with certificate ``C`` (then closes: it speaks no MQTT). Prints ``ready`` once
announced; runs until killed. Used inside a network namespace of the test's own.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ssl
import sys

from zeroconf import IPVersion
from zeroconf.asyncio import AsyncZeroconf

from fogmesh.broker.announce import Announcement
from fogmesh.protocol.lan import TXT_BROKER, TXT_FINGERPRINT, TXT_SITE, TXT_TLS, TXT_VERSION


async def _serve(opts: argparse.Namespace) -> None:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(opts.cert, opts.key)

    async def handle(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()

    server = await asyncio.start_server(handle, opts.host, opts.port, ssl=ctx)
    props = {
        TXT_VERSION: "1",
        TXT_SITE: opts.site,
        TXT_BROKER: "rogue",
        TXT_TLS: "1",
        TXT_FINGERPRINT: opts.fingerprint,
    }
    info = Announcement(f"{opts.site}-rogue", [opts.host], opts.port, props).info()
    zc = AsyncZeroconf(ip_version=IPVersion.V4Only)
    await zc.async_register_service(info, allow_name_change=True)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.agent.rogue_broker")
    for flag in ("--host", "--cert", "--key", "--fingerprint", "--site"):
        parser.add_argument(flag, required=True)
    parser.add_argument("--port", type=int, required=True)
    asyncio.run(_serve(parser.parse_args()))


if __name__ == "__main__":
    main()
