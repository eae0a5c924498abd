"""MQTT clients of the test brokers, and waiting for what they receive."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable

import aiomqtt

from tests.support.mesh_file import PASSWORDS

__all__ = ["client", "collect", "eventually_delivered", "wait_for"]


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
