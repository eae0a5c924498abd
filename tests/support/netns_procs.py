"""Processes run inside a namespace of an :class:`~tests.support.netns.NsPair`: brokers and
the test's side of the MQTT client agents.

:class:`NsBroker` is ``python -m fogmesh.broker run`` inside one namespace; :class:`NsAgent`
drives one ``python -m tests.support.netns agent`` process (commands as JSON lines on its stdin,
replies and received messages as JSON lines on its stdout; the process itself is
:mod:`tests.support.netns_agent`); :class:`NsMesh` and :func:`ns_mesh` are a mesh file's
``site`` and ``cloud`` brokers with the test's agents; :func:`warm_up` waits for a link to
carry messages. All of it is re-exported by :mod:`tests.support.netns`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.support.brokers import REPO, mesh_broker_command, wait_ready
from tests.support.processes import terminate

if TYPE_CHECKING:
    from tests.support.netns import NsPair

__all__ = [
    "NsAgent",
    "NsBroker",
    "NsMesh",
    "ns_mesh",
    "warm_up",
]


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
