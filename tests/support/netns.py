"""Network namespaces for real network-fault tests, and an MQTT client agent to run inside one.

:func:`ns_pair` makes two namespaces (``fmt-{tag}-site``, ``fmt-{tag}-cloud``) joined by a veth
pair created directly inside them (it never appears in the caller's namespace), addressed
``10.213.{n}.1/30`` and ``.2/30``, and always deletes them (and any process left inside) on exit.
Every ``ip``/``tc``/``nft`` command runs with ``ip -n NS`` or ``ip netns exec NS``: only these
two namespaces and their own addresses are ever touched.

A test in the root namespace cannot reach a broker inside one, so it drives
``python -m tests.support.netns agent ...`` processes started with ``ip netns exec``: one MQTT
client each, commands as JSON lines on stdin, replies and received messages as JSON lines on
stdout (:class:`NsAgent` is the test's side of that).

This module keeps the namespaces and their link (:class:`NsPair`, :func:`ns_pair`, the link's
faults) and re-exports the rest: :mod:`tests.support.netns_procs` (brokers and agents run
inside a namespace: :class:`NsBroker`, :class:`NsAgent`, :class:`NsMesh`, :func:`ns_mesh`,
:func:`warm_up`) and :mod:`tests.support.netns_agent` (the agent process itself, run as
``python -m tests.support.netns agent``).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

from tests.support.netns_agent import main
from tests.support.netns_procs import NsAgent, NsBroker, NsMesh, ns_mesh, warm_up

__all__ = [
    "NsAgent",
    "NsBroker",
    "NsMesh",
    "NsPair",
    "netns_unavailable",
    "ns_mesh",
    "ns_pair",
    "warm_up",
]


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=check, capture_output=True, text=True, timeout=30)


def netns_unavailable() -> str | None:
    """Why namespace tests cannot run here, or None if they can."""
    if os.geteuid() != 0:
        return "needs root"
    if shutil.which("ip") is None:
        return "needs iproute2 (ip)"
    probe = f"fmt-{secrets.token_hex(3)}-probe"
    made = _run("ip", "netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"ip netns add failed: {made.stderr.strip()}"
    _run("ip", "netns", "del", probe, check=False)
    return None


@dataclass
class NsPair:
    """Two namespaces joined by one veth pair."""

    tag: str
    net: int
    site: str = ""
    cloud: str = ""
    site_dev: str = "fmt-site"
    cloud_dev: str = "fmt-cloud"
    cut_method: str = ""

    def __post_init__(self) -> None:
        self.site = f"fmt-{self.tag}-site"
        self.cloud = f"fmt-{self.tag}-cloud"

    @property
    def site_addr(self) -> str:
        return f"10.213.{self.net}.1"

    @property
    def cloud_addr(self) -> str:
        return f"10.213.{self.net}.2"

    def ends(self) -> list[tuple[str, str]]:
        """(namespace, its veth) for both ends."""
        return [(self.site, self.site_dev), (self.cloud, self.cloud_dev)]

    def create(self) -> None:
        _run("ip", "netns", "add", self.site)
        _run("ip", "netns", "add", self.cloud)
        _run(
            "ip",
            "link",
            "add",
            self.site_dev,
            "netns",
            self.site,
            "type",
            "veth",
            "peer",
            "name",
            self.cloud_dev,
            "netns",
            self.cloud,
        )
        for (ns, dev), addr in zip(self.ends(), (self.site_addr, self.cloud_addr), strict=True):
            _run("ip", "-n", ns, "addr", "add", f"{addr}/30", "dev", dev)
            _run("ip", "-n", ns, "link", "set", dev, "up")
            _run("ip", "-n", ns, "link", "set", "lo", "up")

    def destroy(self) -> None:
        """Kill whatever still runs inside (only our namespaces' processes), delete both."""
        for ns in (self.site, self.cloud):
            pids = _run("ip", "netns", "pids", ns, check=False).stdout.split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            _run("ip", "netns", "del", ns, check=False)

    def exec(self, ns: str, *argv: str) -> list[str]:
        """``argv`` run inside namespace ``ns`` (one of ours)."""
        assert ns in (self.site, self.cloud)
        return ["ip", "netns", "exec", ns, *argv]

    # ---- faults: always on our own veth devices, inside our own namespaces ----------------

    def cut(self) -> str:
        """Silently drop everything on the veth, both ways: no RST, no ICMP, no link change.

        ``tc netem loss 100%`` on both ends where the kernel has netem; else an nftables rule in
        each namespace dropping whatever arrives on its veth (the sender sees nothing either).
        """
        if self._netem("loss", "100%"):
            self.cut_method = "tc netem loss 100%"
            return self.cut_method
        for ns, dev in self.ends():
            _run(*self.exec(ns, "nft", "add", "table", "inet", "fmt"))
            _run(
                *self.exec(
                    ns,
                    "nft",
                    "add chain inet fmt in { type filter hook input priority 0; policy accept; }",
                )
            )
            _run(*self.exec(ns, "nft", "add", "rule", "inet", "fmt", "in", "iifname", dev, "drop"))
        self.cut_method = "nftables input drop on both veth ends (no netem in this kernel)"
        return self.cut_method

    def heal(self) -> None:
        """Undo :meth:`cut` and :meth:`slow`."""
        for ns, dev in self.ends():
            _run(*self.exec(ns, "tc", "qdisc", "del", "dev", dev, "root"), check=False)
            _run(*self.exec(ns, "nft", "delete", "table", "inet", "fmt"), check=False)

    def slow(self) -> str:
        """A slow but working link: netem 50 ms delay, else a 1 Mbit/s token bucket."""
        if self._netem("delay", "50ms"):
            return "tc netem delay 50ms"
        for ns, dev in self.ends():
            _run(
                *self.exec(
                    ns,
                    "tc",
                    "qdisc",
                    "replace",
                    "dev",
                    dev,
                    "root",
                    "tbf",
                    "rate",
                    "1mbit",
                    "burst",
                    "4kb",
                    "latency",
                    "500ms",
                )
            )
        return "tc tbf rate 1mbit (no netem in this kernel)"

    def _netem(self, *args: str) -> bool:
        for ns, dev in self.ends():
            cmd = self.exec(ns, "tc", "qdisc", "replace", "dev", dev, "root", "netem", *args)
            if _run(*cmd, check=False).returncode != 0:
                self.heal()
                return False
        return True


@contextlib.contextmanager
def ns_pair() -> Iterator[NsPair]:
    """A fresh :class:`NsPair`, deleted on exit whatever happened."""
    pair = NsPair(tag=secrets.token_hex(3), net=secrets.randbelow(256))
    try:
        pair.create()
        yield pair
    finally:
        pair.destroy()


if __name__ == "__main__":
    main()
