"""One site of the chaos fleet behind a WAN link that can be cut: network namespaces.

The fleet's ``site-b`` broker and its agents (with their workloads) run in the site namespace of
an :func:`~tests.support.netns.ns_pair`; everything else stays where the test runs. The site's
link reaches the cloud broker over the pair's veth: it connects to ``cloud_addr`` in the cloud
namespace, where a relay (``python -m tests.chaos.wan relay``, a
:class:`~tests.support.relay.CountingRelay`) accepts and forwards each connection to the cloud
broker's own port. The relay is started where the test runs and creates
only its listening socket inside the cloud namespace (``setns``), so it can reach both.

A cut is :meth:`NsPair.cut` on the pair's veth (nftables drops both ways, or netem loss): silent,
no RST, no ICMP; only keepalives notice. The relay keeps its side to the cloud broker open and
quiet, as a router would, and uses back-pressure (it stops reading from one side while the other
side's buffers are full), so the cloud broker sees what it would see of a real partition.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support.brokers import REPO
from tests.support.netns import NsPair, netns_unavailable, ns_pair
from tests.support.relay import CountingRelay

__all__ = ["CUT_SITE", "WanSplit", "wan_split"]

CUT_SITE = "site-b"
"""The site whose WAN link is cut."""

_CLONE_NEWNET = 0x40000000


@dataclass
class WanSplit:
    """The namespaces of the cut site and the relay to the cloud broker."""

    pair: NsPair
    relay: subprocess.Popen[bytes] | None = None
    cut_since: float | None = None

    @property
    def cloud_addr(self) -> str:
        """Where the cut site's link connects (the relay, in the cloud namespace)."""
        return self.pair.cloud_addr

    def wrap(self, argv: list[str]) -> list[str]:
        """``argv`` run in the cut site's namespace (``ip netns exec`` execs it: same pid)."""
        return self.pair.exec(self.pair.site, *argv)

    def start_relay(self, cloud_port: int, log: Path) -> None:
        """Start the relay to the cloud broker's ``cloud_port`` and wait until it listens."""
        argv = [sys.executable, "-m", "tests.chaos.wan", "relay", "--netns", self.pair.cloud]
        argv += ["--listen", self.cloud_addr, "--port", str(cloud_port)]
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            self.relay = subprocess.Popen(argv, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while "relay listening" not in log.read_text(errors="replace"):
            if self.relay.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the WAN relay did not start:\n{log.read_text()[-2000:]}")
            time.sleep(0.05)

    def cut(self) -> str:
        """Cut the link silently; how (the method used)."""
        self.cut_since = time.monotonic()
        return self.pair.cut()

    def heal(self) -> None:
        """Undo :meth:`cut`."""
        self.pair.heal()
        self.cut_since = None

    def close(self) -> None:
        """Stop the relay (by its pid)."""
        if self.relay is not None and self.relay.poll() is None:
            self.relay.send_signal(signal.SIGKILL)
            self.relay.wait(timeout=30)


@contextlib.contextmanager
def wan_split() -> Iterator[WanSplit | None]:
    """A :class:`WanSplit` (None when namespaces cannot be made here and ``CI`` is not
    ``true``; in CI that is an error); its namespaces and relay are removed on exit, whatever
    happened."""
    reason = netns_unavailable()
    if reason is not None:
        if os.environ.get("CI", "").lower() == "true":
            raise AssertionError(f"the chaos test's WAN cut must run in CI: {reason}")
        yield None
        return
    with ns_pair() as pair:
        split = WanSplit(pair)
        try:
            yield split
        finally:
            split.close()


# ---- the relay process ------------------------------------------------------------------


def _listen_in(netns: str, host: str, port: int) -> socket.socket:
    """A listening socket created inside namespace ``netns``; the process returns to its own
    namespace afterwards (a socket keeps the namespace it was made in)."""
    libc = ctypes.CDLL(None, use_errno=True)
    home_ns, there_ns = Path("/proc/self/ns/net"), Path(f"/run/netns/{netns}")
    with home_ns.open("rb") as home, there_ns.open("rb") as there:
        if libc.setns(there.fileno(), _CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {netns}")
        try:
            sock = socket.create_server((host, port), reuse_port=False)
        finally:
            if libc.setns(home.fileno(), _CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back")
    return sock


async def _relay(opts: argparse.Namespace) -> None:
    sock = _listen_in(opts.netns, opts.listen, opts.port)
    relay = await CountingRelay(opts.port, sock=sock).start()
    print(f"relay listening on {opts.listen}:{opts.port} in {opts.netns}", flush=True)
    try:
        await relay.serve_forever()
    finally:
        await relay.close()


def main() -> None:
    """``python -m tests.chaos.wan relay --netns NS --listen ADDR --port P``."""
    parser = argparse.ArgumentParser(prog="python -m tests.chaos.wan")
    sub = parser.add_subparsers(dest="cmd", required=True)
    relay = sub.add_parser("relay", help="forward ADDR:P in NS to 127.0.0.1:P here")
    relay.add_argument("--netns", required=True)
    relay.add_argument("--listen", required=True)
    relay.add_argument("--port", type=int, required=True)
    asyncio.run(_relay(parser.parse_args()))


if __name__ == "__main__":
    main()
