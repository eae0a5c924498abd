"""The peer's table of handovers (fogmesh.agent.transfer.Transfers), without a broker.

Once a handover's snapshot is all in, a late chunk or a probe carrying its token (a push resumed
after a cut may ask where the peer stands after the last chunk went in) is told the snapshot is
complete, and nothing of it is written; any other token, snapshot or tenant is still refused.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fogmesh.agent.handover import Handover
from fogmesh.agent.transfer import Transfers
from fogmesh.bus import Refusal
from fogmesh.protocol import ErrorCode
from fogmesh.protocol.migration import StatePutCommand, StateReceiveCommand

TENANT, WORKLOAD, SNAPSHOT = "acme", "w", "s1"
DIGEST = "0" * 64


def _expect(token: str) -> StateReceiveCommand:
    return StateReceiveCommand(workload=WORKLOAD, snapshot=SNAPSHOT, size=10,
                               sha256_total=DIGEST, from_node="src", token=token)  # fmt: skip


def _put(token: str | None, snapshot: str = SNAPSHOT) -> StatePutCommand:
    return StatePutCommand(workload=WORKLOAD, snapshot=snapshot, size=10, sha256_total=DIGEST,
                           offset=0, token=token)  # fmt: skip


def _refused(transfers: Transfers, tenant: str, command: StatePutCommand) -> None:
    with pytest.raises(Refusal) as refused:
        transfers.admit(tenant, command)
    assert refused.value.code is ErrorCode.UNAUTHORISED


def test_a_handover_all_in_answers_its_own_token_complete_and_refuses_others(
    tmp_path: Path,
) -> None:
    transfers = Transfers("peer", Handover(tmp_path))
    token, other = os.urandom(16).hex(), os.urandom(16).hex()
    _refused(transfers, TENANT, _put(token))  # not told of it yet
    transfers.expect(TENANT, _expect(token))
    assert transfers.admit(TENANT, _put(token)) is False  # expected: the chunk is wanted

    transfers.received(TENANT, WORKLOAD)
    assert transfers.admit(TENANT, _put(token)) is True  # all in: answered complete
    _refused(transfers, TENANT, _put(other))
    _refused(transfers, TENANT, _put(None))
    _refused(transfers, TENANT, _put(token, snapshot="s2"))
    _refused(transfers, "other", _put(token))

    transfers.expect(TENANT, _expect(other))  # a new handover of the workload replaces it
    _refused(transfers, TENANT, _put(token))
    assert transfers.admit(TENANT, _put(other)) is False

    transfers.received(TENANT, WORKLOAD)
    transfers.forget(TENANT, WORKLOAD)  # the workload is dropped: nothing of it is taken
    _refused(transfers, TENANT, _put(other))
