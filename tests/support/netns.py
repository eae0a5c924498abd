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
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.brokers import REPO, mesh_broker_command, wait_ready
from tests.support.processes import terminate

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


@dataclass
class NsBroker:
    """``python -m fogmesh.broker run`` inside a namespace; stopped and killed by pid."""

    pair: NsPair
    ns: str
    mesh: Path
    broker: str
    proc: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.mesh.parent / f"{self.broker}.log"

    def start(self, timeout: float = 60.0) -> NsBroker:
        cmd = self.pair.exec(self.ns, *mesh_broker_command(self.mesh, self.broker))
        with self.log.open("ab") as out:
            # ip netns exec execs the command: this pid is the broker's
            self.proc = subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
        wait_ready(self.proc, self.log, self.broker, timeout)
        return self

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def stop(self) -> None:
        terminate(self.proc, 20)
        self.proc = None


@dataclass
class NsAgent:
    """The test's side of one ``agent`` process: send commands, read replies and messages."""

    proc: asyncio.subprocess.Process
    name: str
    messages: list[dict[str, Any]] = field(default_factory=list)
    _replies: dict[int, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)
    _next: int = 0
    _reader: asyncio.Task[None] | None = None
    stderr: bytes = b""

    @classmethod
    async def start(
        cls,
        pair: NsPair,
        ns: str,
        *,
        host: str,
        port: int,
        user: str,
        password: str,
        ident: str,
        persistent: bool = False,
    ) -> NsAgent:
        argv = [
            sys.executable,
            "-m",
            "tests.support.netns",
            "agent",
            "--host",
            host,
            "--port",
            str(port),
            "--user",
            user,
            "--password",
            password,
            "--ident",
            ident,
        ]
        if persistent:
            argv.append("--persistent")
        cmd = pair.exec(ns, *argv)
        proc = await asyncio.create_subprocess_exec(
            *cmd,
            cwd=REPO,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        agent = cls(proc=proc, name=ident)
        agent._reader = asyncio.create_task(agent._read())
        await agent.call("ping", timeout=60)
        return agent

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for line in self.proc.stdout:
            data = json.loads(line)
            if data["kind"] == "msg":
                self.messages.append(data)
            elif (fut := self._replies.pop(data["id"], None)) is not None and not fut.done():
                fut.set_result(data)
        for fut in self._replies.values():
            if not fut.done():
                fut.set_exception(RuntimeError(f"agent {self.name} exited"))

    async def call(self, op: str, timeout: float = 60.0, **args: Any) -> dict[str, Any]:
        """Send one command; its reply (``ok`` or an ``error``)."""
        assert self.proc.stdin is not None
        self._next += 1
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._replies[self._next] = fut
        self.proc.stdin.write(json.dumps({"op": op, "id": self._next, **args}).encode() + b"\n")
        await self.proc.stdin.drain()
        async with asyncio.timeout(timeout):
            reply = await fut
        if "error" in reply:
            raise RuntimeError(f"agent {self.name}: {op}: {reply['error']}")
        return reply

    async def subscribe(self, flt: str, qos: int = 1) -> None:
        await self.call("sub", filter=flt, qos=qos)

    async def publish(
        self,
        topic: str,
        payloads: list[str],
        qos: int = 1,
        gap: float = 0.0,
        *,
        retain: bool = False,
    ) -> None:
        """Publish in order, each acknowledged before the next (``gap`` seconds apart)."""
        await self.call(
            "pub", timeout=120, topic=topic, payloads=payloads, qos=qos, gap=gap, retain=retain
        )

    def payloads(self, topic: str | None = None) -> list[str]:
        return [m["payload"] for m in self.messages if topic is None or m["topic"] == topic]

    async def close(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()  # by pid: ip netns exec execs the agent itself
        await self.proc.wait()
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await self._reader
        if self.proc.stderr is not None:
            self.stderr = await self.proc.stderr.read()


# ---- the agent process ------------------------------------------------------------------


@dataclass
class NsMesh:
    """The ``site`` and ``cloud`` brokers of a mesh file, each in its namespace of ``pair``
    (both on ``port``), and the test's agent processes there, as user ``svc``."""

    pair: NsPair
    mesh: Path
    password: str
    """``svc``'s."""
    port: int = 1883
    agents: list[NsAgent] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.cloud = NsBroker(self.pair, self.pair.cloud, self.mesh, "cloud")
        self.site = NsBroker(self.pair, self.pair.site, self.mesh, "site")

    async def agent(
        self, ns: str, ident: str, *, host: str = "127.0.0.1", persistent: bool = False
    ) -> NsAgent:
        """A client in namespace ``ns`` of the broker at ``host``, closed after the test."""
        made = await NsAgent.start(
            self.pair, ns, host=host, port=self.port, user="svc", password=self.password,
            ident=ident, persistent=persistent,
        )  # fmt: skip
        self.agents.append(made)
        return made


async def warm_up(pub: NsAgent, sub: NsAgent, topic: str, timeout: float = 60.0) -> None:
    """Publish on ``topic`` until ``sub`` has it (a link may still be subscribing at first)."""
    deadline = time.monotonic() + timeout
    while not sub.payloads(topic):
        assert time.monotonic() < deadline, "warm-up message never crossed the link"
        await pub.publish(topic, ["w"])
        await asyncio.sleep(0.5)


@contextlib.asynccontextmanager
async def ns_mesh(
    pair: NsPair, mesh: Path, password: str, *, cloud_log: int = 3000
) -> AsyncIterator[NsMesh]:
    """Both brokers of ``mesh`` started for the block (``password``: user ``svc``'s, for the
    agents); on a failure the tails of their logs are printed (``cloud_log`` characters of the
    cloud's); after it, every agent is closed and both brokers stopped."""
    made = NsMesh(pair, mesh, password)
    try:
        made.cloud.start()
        made.site.start()
        yield made
    except BaseException:
        print("---- site log ----\n" + made.site.tail(6000))
        print("---- cloud log ----\n" + made.cloud.tail(cloud_log))
        raise
    finally:
        for agent in made.agents:
            await agent.close()
        made.site.stop()
        made.cloud.stop()


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


if __name__ == "__main__":
    main()
