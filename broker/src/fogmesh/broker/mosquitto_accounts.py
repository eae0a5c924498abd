"""Runtime accounts on a Mosquitto broker: render ``passwd`` and ``acl`` again, then SIGHUP.

Mosquitto knows nothing of fogmesh's account records, but it re-reads its password and ACL files
on SIGHUP and disconnects every client they no longer admit (Mosquitto 2.0). So a small process
beside it, ``fogmesh-broker mosquitto-accounts``, subscribes to ``fm/v1/accounts/+`` and
``fm/v1/tenants/+`` on that broker as a service account, merges the records with the mesh
file's users exactly as the embedded broker does (:class:`~fogmesh.broker.accounts.AccountBook`),
renders the files with ``render-mosquitto`` and signals Mosquitto. Join tokens are not redeemed
on Mosquitto (only the embedded broker answers ``fm/v1/join/...``): their bootstrap accounts are
left out.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from dataclasses import dataclass
from pathlib import Path

import aiomqtt

from fogmesh.broker.accounts import ACCOUNT_PREFIX, AccountBook
from fogmesh.broker.config import MeshSpec, UserSpec
from fogmesh.broker.mosquitto import DEFAULT_USER, render_mosquitto
from fogmesh.bus import backoff_delay
from fogmesh.protocol.accounts import ACCOUNTS_FILTER, JOIN_ROLE, TENANTS_FILTER

__all__ = ["MosquittoAccounts", "live_users"]

log = logging.getLogger(__name__)
_SETTLE = 0.3  # records come in bursts (a tenant delete is several): render once per burst


@dataclass(frozen=True, slots=True)
class _Stored:
    data: bytes


def live_users(mesh: MeshSpec, name: str, retained: dict[str, _Stored | bytes]) -> list[UserSpec]:
    """The accounts broker ``name`` admits now: the mesh file's, as ``retained`` records change
    them (``retained``: topic -> payload of the account and tenant records)."""
    store = {t: v if isinstance(v, _Stored) else _Stored(v) for t, v in retained.items()}
    book = AccountBook(mesh.brokers[name].users, lambda: store)
    names = [u.username for u in mesh.brokers[name].users]
    names += [t[len(ACCOUNT_PREFIX) :] for t in store if t.startswith(ACCOUNT_PREFIX)]
    users = []
    for username in dict.fromkeys(names):
        user = book.user(username)
        if user is not None and user.role != JOIN_ROLE:
            users.append(user)
    return users


@dataclass
class MosquittoAccounts:
    """Keeps a Mosquitto broker's ``passwd`` and ``acl`` in step with the account records."""

    mesh: MeshSpec
    name: str
    out: Path
    pid_file: Path
    username: str
    password: str
    host: str = "127.0.0.1"
    port: int | None = None
    user: str = DEFAULT_USER

    def render(self, retained: dict[str, _Stored | bytes]) -> None:
        """Write the files for the records in ``retained`` and tell Mosquitto to re-read them."""
        spec = self.mesh.brokers[self.name]
        now = spec.model_copy(update={"users": live_users(self.mesh, self.name, retained)})
        mesh = self.mesh.model_copy(update={"brokers": {**self.mesh.brokers, self.name: now}})
        render_mosquitto(mesh, self.name, self.out, user=self.user)
        try:
            pid = int(self.pid_file.read_text().split()[0])
            os.kill(pid, signal.SIGHUP)
        except (OSError, ValueError, IndexError) as exc:
            log.warning("rendered, but could not signal mosquitto (%s): %s", self.pid_file, exc)
            return
        log.info(
            "accounts rendered for %s (%d users); mosquitto reloads", self.name, len(now.users)
        )

    async def run(self) -> None:
        """Follow the records for ever, reconnecting with back-off."""
        port = self.port or self.mesh.brokers[self.name].plain_listener().port
        retained: dict[str, _Stored | bytes] = {}
        attempt = 0
        while True:
            try:
                async with aiomqtt.Client(
                    self.host, port, username=self.username, password=self.password,
                    identifier=f"fm-accounts-{self.name}", clean_session=True, timeout=20,
                ) as client:  # fmt: skip
                    attempt = 0
                    await client.subscribe(ACCOUNTS_FILTER, qos=1)
                    await client.subscribe(TENANTS_FILTER, qos=1)
                    await self._follow(client, retained)
            except aiomqtt.MqttError as exc:
                attempt += 1
                delay = backoff_delay(attempt, base=0.5, cap=30.0)
                log.warning("mosquitto-accounts: %s; again in %.1fs", exc, delay)
                await asyncio.sleep(delay)

    async def _follow(self, client: aiomqtt.Client, retained: dict[str, _Stored | bytes]) -> None:
        messages = aiter(client.messages)
        while True:
            msg = await anext(messages)
            changed = _keep(retained, msg)
            while True:  # take the rest of the burst before rendering
                try:
                    msg = await asyncio.wait_for(anext(messages), _SETTLE)
                except TimeoutError:
                    break
                changed = _keep(retained, msg) or changed
            if changed:
                self.render(retained)


def _keep(retained: dict[str, _Stored | bytes], msg: aiomqtt.Message) -> bool:
    topic = msg.topic.value
    data = bytes(msg.payload) if isinstance(msg.payload, bytes | bytearray) else b""
    if not data:
        return retained.pop(topic, None) is not None
    old = retained.get(topic)
    retained[topic] = data
    return old != data
