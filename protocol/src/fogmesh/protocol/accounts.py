"""Broker accounts at runtime, tenants, and node join tokens.

Accounts travel on the bus as retained records, one per username, so every broker of the mesh
learns them the way it learns any retained state (links carry them):

    fm/v1/accounts/{username}     AccountRecord (retained): role, $7$ hash, node/tenant, revoked
    fm/v1/tenants/{tenant}        TenantRecord (retained): a deleted tenant is revoked
    fm/v1/join/{bootstrap}        JoinRequest -> JoinReply: a join token redeemed for a node

Only services publish records (the operator's CLI); brokers read them. A revoked record is a
tombstone: it outlives the mesh file's bootstrap account of the same name, so an account the
mesh file made can be revoked too.
"""

from __future__ import annotations

import time

from pydantic import Field

from fogmesh.protocol._ids import Ident, check_id
from fogmesh.protocol.envelope import Envelope, Reply, Request
from fogmesh.protocol.topics import ROOT

__all__ = [
    "ACCOUNTS_FILTER",
    "JOIN_PREFIX",
    "JOIN_ROLE",
    "TENANTS_FILTER",
    "AccountRecord",
    "JoinReply",
    "JoinRequest",
    "TenantRecord",
    "account_topic",
    "join_topic",
    "tenant_topic",
]

ACCOUNTS_FILTER = f"{ROOT}/accounts/+"
TENANTS_FILTER = f"{ROOT}/tenants/+"
JOIN_ROLE = "joiner"
"""The role of a join token's bootstrap account: it may only ask to join."""
JOIN_PREFIX = "join-"
"""A join token's bootstrap account is ``join-{token id}``."""
_HASH = r"^\$7\$\d+\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$"


def account_topic(username: str) -> str:
    """``fm/v1/accounts/{username}``."""
    return f"{ROOT}/accounts/{check_id(username, what='username')}"


def tenant_topic(tenant: str) -> str:
    """``fm/v1/tenants/{tenant}``."""
    return f"{ROOT}/tenants/{check_id(tenant, what='tenant')}"


def join_topic(bootstrap: str) -> str:
    """``fm/v1/join/{bootstrap account}``: where a joining agent asks for its credential."""
    return f"{ROOT}/join/{check_id(bootstrap, what='username')}"


class AccountRecord(Envelope):
    """``accounts/{username}`` (retained): one broker account, or its tombstone (``revoked``).

    ``expires_at`` (unix time) bounds a join token's bootstrap account; a record past it admits
    nobody.
    """

    username: Ident
    role: Ident
    password_hash: str = Field(default="", pattern=rf"{_HASH}|^$")
    node: Ident | None = None
    # the account's tenant (``tenant`` of the envelope is not used for accounts)
    account_tenant: Ident | None = None
    revoked: bool = False
    expires_at: float | None = None

    def live(self, now: float | None = None) -> bool:
        """True if the record admits its account now."""
        if self.revoked or not self.password_hash:
            return False
        return (
            self.expires_at is None or (now if now is not None else time.time()) < self.expires_at
        )


class TenantRecord(Envelope):
    """``tenants/{tenant}`` (retained): a tenant exists, or was deleted (``revoked``).

    A revoked tenant's accounts are refused by every broker, bootstrap ones included.
    """

    name: Ident
    revoked: bool = False


class JoinRequest(Request):
    """``join/{bootstrap}``: an agent holding a join token asks for its node's credential."""

    node: Ident | None = Field(
        default=None, description="the node it wants to be, if the token names none"
    )


class JoinReply(Reply):
    """The node's own credential; the agent stores it 0600 and uses only that from then on."""

    node: Ident
    username: Ident
    password: str = Field(min_length=16, max_length=256)
