"""Mesh test helpers: mesh files on free ports, ``python -m fogmesh.broker`` processes."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
import yaml

from fogmesh.broker.passwords import hash_password
from tests.support.brokers import REPO, free_port, wait_port

PASSWORDS = {
    "svc": "svc-pw",
    "bridge": "bridge-pw",
    "node-a": "node-a-pw",
    "acme": "acme-pw",
    "globex": "globex-pw",
}
_HASHES = {user: hash_password(pw) for user, pw in PASSWORDS.items()}
USERS = [
    {"username": "svc", "password_hash": _HASHES["svc"], "role": "service"},
    {"username": "bridge", "password_hash": _HASHES["bridge"], "role": "bridge"},
    {"username": "node-a", "password_hash": _HASHES["node-a"], "role": "node"},
    {"username": "acme", "password_hash": _HASHES["acme"], "role": "tenant"},
    {"username": "globex", "password_hash": _HASHES["globex"], "role": "tenant"},
]


def broker_spec(tmp: Path, name: str, *, port: int | None = None, **extra: Any) -> dict[str, Any]:
    """A mesh-file broker entry with one TCP listener on a free port and the test users."""
    spec: dict[str, Any] = {
        "listeners": [{"name": "default", "port": port or free_port()}],
        "data_dir": str(tmp / name),
        "users": USERS,
    }
    spec.update(extra)
    return spec


def link_spec(
    name: str, owner: str, remote: str, rules: list[dict[str, Any]], **extra: Any
) -> dict[str, Any]:
    """A link run by ``owner`` to mesh broker ``remote``, both ends as user ``bridge``."""
    cred = {"username": "bridge", "password": PASSWORDS["bridge"]}
    spec: dict[str, Any] = {
        "name": name,
        "broker": owner,
        "local": cred,
        "remote": {"broker": remote, **cred},
        "rules": rules,
        "backoff_base": 0.2,
        "backoff_cap": 2.0,
    }
    spec.update(extra)
    return spec


def write_mesh(path: Path, brokers: dict[str, Any], links: list[dict[str, Any]]) -> Path:
    """Write a mesh file and return its path."""
    path.write_text(yaml.safe_dump({"brokers": brokers, "links": links}))
    return path


def port_of(mesh: Path, broker: str) -> int:
    """The first listener port of ``broker`` in the mesh file."""
    data = yaml.safe_load(mesh.read_text())
    return int(data["brokers"][broker]["listeners"][0]["port"])


@dataclass
class MeshProcess:
    """One ``python -m fogmesh.broker run`` process that can be stopped, killed and restarted."""

    mesh: Path
    broker: str
    args: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.mesh.parent / f"{self.broker}{''.join(self.args)}.log"

    def start(self) -> MeshProcess:
        out = self.log.open("ab")
        cmd = [
            sys.executable,
            "-m",
            "fogmesh.broker",
            "--log-level",
            "INFO",
            "run",
            "--mesh",
            str(self.mesh),
            "--broker",
            self.broker,
            *self.args,
        ]
        self.proc = subprocess.Popen(
            cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env={**os.environ}
        )
        if "--no-broker" not in self.args:
            wait_port(port_of(self.mesh, self.broker), timeout=30)
        deadline = time.monotonic() + 30
        while f"ready {self.broker}" not in self.log.read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.broker} did not start:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.05)
        return self

    def stop(self) -> int | None:
        """SIGTERM and wait; returns the exit code."""
        if self.proc is None:
            return None
        code = self.proc.poll()
        if code is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                code = self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                code = self.proc.wait()
        self.proc = None
        return code

    def kill(self) -> None:
        """SIGKILL: no goodbye."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


@pytest.fixture
def procs() -> Iterator[list[MeshProcess]]:
    """Processes registered here are stopped after the test."""
    started: list[MeshProcess] = []
    yield started
    for proc in reversed(started):
        proc.kill()


def client(
    port: int,
    user: str | None = "svc",
    *,
    ident: str | None = None,
    clean: bool = True,
    password: str | None = None,
) -> aiomqtt.Client:
    """An aiomqtt client for a test broker on 127.0.0.1."""
    return aiomqtt.Client(
        "127.0.0.1",
        port,
        username=user,
        password=password if password is not None else (PASSWORDS.get(user) if user else None),
        # node and tenant accounts may only use client ids they own ({username}-...)
        identifier=ident or f"{user or 't'}-t{uuid.uuid4().hex[:10]}",
        clean_session=clean,
        timeout=20,
        max_queued_outgoing_messages=0,
        max_inflight_messages=100,
    )


async def wait_for(cond: Callable[[], bool], timeout: float = 60.0, what: str = "") -> None:
    """Poll ``cond`` until true; fail after a generous ``timeout``."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or cond}")
        await asyncio.sleep(0.05)


async def collect(c: aiomqtt.Client, sink: list[aiomqtt.Message]) -> None:
    """Append every message ``c`` receives to ``sink`` (run as a task)."""
    async for msg in c.messages:
        sink.append(msg)


async def eventually_delivered(
    publish: Callable[[], Awaitable[None]], received: Callable[[], bool], timeout: float = 60.0
) -> None:
    """Publish repeatedly until ``received`` (a link may still be subscribing at first)."""
    deadline = time.monotonic() + timeout
    while not received():
        if time.monotonic() > deadline:
            raise AssertionError("message never crossed the link")
        await publish()
        for _ in range(20):
            if received():
                return
            await asyncio.sleep(0.05)


def site_cloud_mesh(tmp: Path) -> Path:
    """Brokers ``site`` and ``cloud`` joined by link ``wan`` carrying ``tele/#`` out at QoS 1."""
    return write_mesh(
        tmp / "mesh.yaml",
        {"site": broker_spec(tmp, "site"), "cloud": broker_spec(tmp, "cloud")},
        [link_spec("wan", "site", "cloud", [{"pattern": "tele/#", "direction": "out", "qos": 1}])],
    )


async def warm_persistent_subscriber(
    cloud: int, site: int, got: list[aiomqtt.Message], ident: str = "cloud-sub"
) -> None:
    """Give the cloud a persistent ``tele/#`` subscriber and prove the link carries to it.

    The subscriber disconnects afterwards; its session must keep what arrives meanwhile.
    """
    async with client(cloud, ident=ident, clean=False) as c, client(site) as s:
        await c.subscribe("tele/#", qos=1)
        task = asyncio.create_task(collect(c, got))
        await eventually_delivered(
            lambda: s.publish("tele/warmup", b"w-0", qos=1), lambda: bool(got)
        )
        task.cancel()
