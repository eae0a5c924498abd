"""Joining with a token: trade a single-use join token for the node's own credential.

``fogmesh node token`` prints ``{id}.{secret}``. Started with ``--join-token``, the agent
connects as the token's bootstrap account ``join-{id}`` (which may only ask to join), sends a
:class:`~fogmesh.protocol.accounts.JoinRequest` and gets its node's username and password from
the broker it joins through. The credential is written 0600 to ``node-credential.json`` in the
state dir; from then on the agent connects only with it (a stored credential wins over a token
and over the broker block's account), so the token is never needed, nor usable, again.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fogmesh.agent.config import AgentConfig
from fogmesh.bus import Bus
from fogmesh.protocol import FogmeshError, Ident, RemoteError, RequestTimeout, check_id

__all__ = [
    "CREDENTIAL_FILE",
    "JoinFailed",
    "NodeCredential",
    "load_credential",
    "prepare",
    "redeem",
    "save_credential",
]

CREDENTIAL_FILE = "node-credential.json"
_TIMEOUT = 30.0


class JoinFailed(FogmeshError):
    """The token was refused, or the broker could not be reached to redeem it."""


class NodeCredential(BaseModel):
    """The node's own account, as the join gave it."""

    model_config = ConfigDict(extra="forbid")

    node: Ident
    username: Ident
    password: str = Field(min_length=1)


def load_credential(state_dir: Path) -> NodeCredential | None:
    """The stored credential, or None when the node has not joined yet."""
    path = state_dir / CREDENTIAL_FILE
    try:
        return NodeCredential.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValidationError) as exc:
        raise JoinFailed(f"unreadable node credential {path}: {exc}") from exc


def save_credential(state_dir: Path, cred: NodeCredential) -> Path:
    """Write ``cred`` 0600 (through a temporary file, so a crash leaves the old one or none)."""
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = state_dir / CREDENTIAL_FILE
    tmp = path.with_suffix(".tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(cred.model_dump_json().encode())
        out.flush()
        os.fsync(out.fileno())
    tmp.replace(path)
    return path


def _split(token: str) -> tuple[str, str]:
    from fogmesh.protocol.accounts import JOIN_PREFIX  # only with a token to redeem

    token_id, sep, secret = token.strip().partition(".")
    try:
        check_id(token_id, what="join token id")
    except ValueError as exc:
        raise JoinFailed("a join token looks like ID.SECRET (from `fogmesh node token`)") from exc
    if not sep or not secret:
        raise JoinFailed("a join token looks like ID.SECRET (from `fogmesh node token`)")
    return f"{JOIN_PREFIX}{token_id}", secret


async def redeem(config: AgentConfig, token: str, *, timeout: float = _TIMEOUT) -> NodeCredential:
    """Connect with ``token``'s bootstrap account and ask for the node's credential."""
    from fogmesh.protocol.accounts import JoinReply, JoinRequest, join_topic

    bootstrap, secret = _split(token)
    broker = config.broker.model_copy(
        update={"username": bootstrap, "password": secret, "client_id": None}
    )
    async with Bus(broker.bus_config(f"{bootstrap}-agent", clean_session=True)) as bus:
        try:
            await bus.wait_connected(timeout=timeout)
        except TimeoutError as exc:
            raise JoinFailed(
                f"the broker at {broker.host}:{broker.port} did not admit the join token"
                " (used already, expired, revoked, or the broker is unreachable)"
            ) from exc
        try:
            reply = await bus.request(
                join_topic(bootstrap), JoinRequest(node=config.node_id), JoinReply, timeout=timeout
            )
        except RemoteError as exc:
            raise JoinFailed(f"join refused: {exc.error.message}") from exc
        except RequestTimeout as exc:
            raise JoinFailed(
                "no answer to the join request (is the token's broker fogmesh's?)"
            ) from exc
    return NodeCredential(node=reply.node, username=reply.username, password=reply.password)


def with_credential(config: AgentConfig, cred: NodeCredential) -> AgentConfig:
    """``config`` connecting as the node's own account (and as that node)."""
    broker = config.broker.model_copy(update={"username": cred.username, "password": cred.password})
    return config.model_copy(update={"broker": broker, "node_id": cred.node})


async def prepare(config: AgentConfig, token: str | None) -> AgentConfig:
    """The configuration to run with: the stored credential if any, else one redeemed now."""
    stored = load_credential(config.state_dir)
    if stored is not None:
        return with_credential(config, stored)
    if token is None:
        return config
    cred = await redeem(config, token)
    save_credential(config.state_dir, cred)
    return with_credential(config, cred)
