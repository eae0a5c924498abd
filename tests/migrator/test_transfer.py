"""Snapshots moved peer to peer between real agents (processes) over Mosquitto: the source
agent pushes to the peer agent, the test plays the migrator (fogmesh.migrator.transfer).

A cut link (the broker restarted while the source is stopped mid-push) resumes at the peer's
offset; a chunk damaged on the way is refused by the peer and sent again; a chunk for a
handover the peer was not told about is refused; the broker's ACL lets a node push chunks to a
peer and nothing more of its commands.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import signal
from pathlib import Path
from typing import TypeVar

import pytest

from fogmesh.agent.handover import Handover
from fogmesh.agent.transfer import PUSH_RETRIES, Transfers, _Push
from fogmesh.broker.acl import Identity, RoleTable
from fogmesh.bus import Bus, BusConfig, MessageContext
from fogmesh.migrator.transfer import hand_over
from fogmesh.protocol import ErrorCode, RemoteError, new_id, topics
from fogmesh.protocol.commands import AckReply, NodeVerb
from fogmesh.protocol.envelope import Reply, Request
from fogmesh.protocol.migration import (
    FrozenReply,
    StatePutCommand,
    StatePutReply,
    StateReceiveCommand,
    StateSendCommand,
)
from fogmesh.protocol.node import Heartbeat
from tests.agent.support import AgentProc, wait_for
from tests.migrator.support import _print_agent_logs
from tests.support.brokers import BrokerProcess, mosquitto_etc, wait_port
from tests.support.buses import bus_config
from tests.support.documented_fleet import Fleet, start_agent, start_broker

R = TypeVar("R", bound=Reply)
TENANT, WORKLOAD = "acme", "w"
KEY = f"{TENANT}/{WORKLOAD}"
CHUNK = 256 * 1024
NATIVE = ["--runtimes", "native"]


class _Migrator:
    """The test's side of the migrator: commands to agents over its bus."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.sends = 0

    async def ask(
        self, tenant: str, node: str, verb: NodeVerb, request: Request, model: type[R],
        *, timeout: float | None = None,
    ) -> R:  # fmt: skip
        self.sends += verb is NodeVerb.STATE_SEND
        sent = request.model_copy(update={"tenant": tenant, "id": new_id()})
        return await self.bus.request(
            topics.node_cmd(node, verb), sent, model, timeout=timeout or 10
        )


def _stage(agent: AgentProc, data: bytes) -> FrozenReply:
    """Stage ``data`` as a frozen snapshot on ``agent``'s disk (its agent serves it from there)."""
    snapshot, size, digest = Handover(agent.state_dir / "handover").stage_out(KEY, data)
    return FrozenReply(correlation_id=new_id(), workload=WORKLOAD, snapshot=snapshot, size=size,
                       sha256=digest)  # fmt: skip


def _ready(agent: AgentProc) -> Path:
    return Handover(agent.state_dir / "handover").ready_path(KEY)


async def _fleet(bus: Bus, agents: list[AgentProc]) -> None:
    seen: set[str] = set()

    async def on_beat(beat: Heartbeat, ctx: MessageContext) -> None:
        seen.add(beat.node)

    bus.subscribe(topics.node_filter("heartbeat"), Heartbeat, on_beat)
    await bus.wait_connected(timeout=20)
    for agent in agents:
        agent.start()
    await wait_for(lambda: seen >= {a.node for a in agents}, 60, "both agents beat")


async def test_a_push_cut_mid_way_resumes_at_the_peers_offset(
    tmp_path: Path, run_label: str
) -> None:
    broker = BrokerProcess("mosquitto", tmp_path / "broker").start()
    src = AgentProc("t-src", broker.port, tmp_path / "t-src", run_label, NATIVE)
    peer = AgentProc("t-peer", broker.port, tmp_path / "t-peer", run_label, NATIVE)
    try:
        async with Bus(bus_config(broker, client_id="migrator")) as bus:
            await _fleet(bus, [src, peer])
            data = os.urandom(48 * 2**20)
            frozen = _stage(src, data)
            migrator = _Migrator(bus)
            part = Handover(peer.state_dir / "handover").incoming
            cut = False

            async def cut_when_half_in() -> None:
                nonlocal cut
                await wait_for(
                    lambda: any(p.stat().st_size >= len(data) // 4 for p in part.glob("*.part")),
                    120, "a quarter of the snapshot at the peer",
                )  # fmt: skip
                assert src.proc is not None
                src.proc.send_signal(signal.SIGSTOP)  # the source cannot finish meanwhile
                broker.stop()
                broker.start()  # every link is cut; the stopped source's connection is gone
                src.proc.send_signal(signal.SIGCONT)
                cut = True

            cutter = asyncio.create_task(cut_when_half_in())
            sent = await hand_over(
                migrator, TENANT, workload=WORKLOAD, source=src.node, peer=peer.node,
                frozen=frozen, chunk_bytes=CHUNK, stall_s=4.0,
            )  # fmt: skip
            await cutter
            assert cut
            assert hashlib.sha256(_ready(peer).read_bytes()).hexdigest() == frozen.sha256
            # It went on from the peer's offset, never from 0, on either path a cut may take:
            # the migrator's second send starts there (sent < the snapshot), or the source's own
            # push, its chunks lost, asks the peer where it stands and re-sends at most its
            # window per try (a restart from 0 would send the quarter already there again).
            resent = PUSH_RETRIES * 4 * CHUNK
            if migrator.sends >= 2:
                assert 0 < sent < len(data)
            else:
                assert len(data) <= sent <= len(data) + resent < len(data) * 5 // 4
    except BaseException:
        _print_agent_logs([src, peer])
        raise
    finally:
        src.kill()
        peer.kill()
        broker.stop()


async def test_a_damaged_chunk_is_refused_and_sent_again_and_no_other_handover_is_taken(
    tmp_path: Path, run_label: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    broker = BrokerProcess("mosquitto", tmp_path / "broker").start()
    peer = AgentProc("t-peer", broker.port, tmp_path / "t-peer", run_label, NATIVE)
    try:
        async with Bus(bus_config(broker, client_id="t-src")) as bus:
            await _fleet(bus, [peer])
            # the sending side in this process (the agent's own code), the peer a real agent
            source = Transfers("t-src", Handover(tmp_path / "src-handover"))
            data = os.urandom(3 * CHUNK + 1000)
            snapshot, size, digest = source.handover.stage_out(KEY, data)
            token = os.urandom(16).hex()
            migrator = _Migrator(bus)
            expect = StateReceiveCommand(
                workload=WORKLOAD, snapshot=snapshot, size=size, sha256_total=digest,
                from_node="t-src", token=token,
            )  # fmt: skip
            await migrator.ask(TENANT, peer.node, NodeVerb.STATE_RECEIVE, expect, AckReply)

            def forged(token: str | None, at: int = 0) -> StatePutCommand:
                chunk = data[at : at + 10]
                return StatePutCommand(
                    workload=WORKLOAD, snapshot=snapshot, size=size, sha256_total=digest,
                    offset=at, data_b64=base64.b64encode(chunk).decode(),
                    sha256=hashlib.sha256(chunk).hexdigest(), token=token,
                )  # fmt: skip

            for wrong in (None, os.urandom(16).hex()):  # not told of it: refused, nothing kept
                with pytest.raises(RemoteError) as refused:
                    await migrator.ask(TENANT, peer.node, NodeVerb.STATE_PUT, forged(wrong),
                                       StatePutReply)  # fmt: skip
                assert refused.value.code is ErrorCode.UNAUTHORISED
            with pytest.raises(RemoteError):  # another tenant's workload has no such handover
                await migrator.ask("other", peer.node, NodeVerb.STATE_PUT, forged(token),
                                   StatePutReply)  # fmt: skip

            damaged: list[int] = []
            put = _Push._put

            def damaging(self: _Push, offset: int, chunk: bytes = b"") -> StatePutCommand:
                sent = put(self, offset, chunk)
                if offset == CHUNK and not damaged:  # flipped on the way, once
                    damaged.append(offset)
                    bad = bytes([chunk[0] ^ 0xFF]) + chunk[1:]
                    return sent.model_copy(update={"data_b64": base64.b64encode(bad).decode()})
                return sent

            monkeypatch.setattr(_Push, "_put", damaging)
            send = StateSendCommand(workload=WORKLOAD, snapshot=snapshot, size=size,
                                    sha256_total=digest, to=peer.node, token=token,
                                    chunk_bytes=CHUNK, chunk_timeout_s=10)  # fmt: skip
            resumed_at, sent = await source.push(bus, TENANT, send)

            assert damaged == [CHUNK]
            assert resumed_at == 0
            assert sent > size  # the refused chunk (and those behind it) went again
            assert _ready(peer).read_bytes() == data
            await wait_for(lambda: "state chunk refused" in peer.log_text(), 20, "the refusal")
            # the handover is over: its token writes nothing more, it is told the snapshot is in
            spent = await migrator.ask(TENANT, peer.node, NodeVerb.STATE_PUT, forged(token),
                                       StatePutReply)  # fmt: skip
            assert spent.complete
            assert spent.next_offset == size
            assert _ready(peer).read_bytes() == data
            with pytest.raises(RemoteError) as guessed:  # any other token is still refused
                await migrator.ask(TENANT, peer.node, NodeVerb.STATE_PUT,
                                   forged(os.urandom(16).hex()), StatePutReply)  # fmt: skip
            assert guessed.value.code is ErrorCode.UNAUTHORISED
    except BaseException:
        _print_agent_logs([peer])
        raise
    finally:
        peer.kill()
        broker.stop()


def test_a_node_may_push_chunks_to_a_peer_and_read_none() -> None:
    """The built-in node role (the embedded broker's and the rendered Mosquitto ACL's)."""
    table = RoleTable()
    node = Identity(username="edge-1", client_id="edge-1", role="node", node="edge-1")
    tenant = Identity(username="acme", client_id="acme-cli", role="tenant", tenant="acme")
    put = topics.node_cmd("edge-2", NodeVerb.STATE_PUT)
    assert table.may_publish(node, put)
    assert not table.may_publish(tenant, put)
    for verb in NodeVerb:
        if verb is not NodeVerb.STATE_PUT:  # no other command to a peer, not even a read
            assert not table.may_publish(node, topics.node_cmd("edge-2", verb)), verb
    assert not table.may_subscribe(node, topics.node_cmd_filter("edge-2"))
    assert not table.may_subscribe(node, topics.node_cmd("edge-2", NodeVerb.STATE_PUT))
    assert table.may_subscribe(node, topics.node_cmd_filter("edge-1"))


@pytest.mark.mosquitto
@pytest.mark.parametrize("kind", ["amqtt", "mosquitto"])
async def test_a_push_goes_peer_to_peer_on_a_broker_with_accounts(
    kind: str, tmp_path: Path
) -> None:
    """The node accounts' ACL as brokers enforce it (the embedded broker, and Mosquitto from
    the files render-mosquitto writes) lets the source agent's chunks reach the peer agent;
    what it refuses is in the role test above."""
    users = (("migrator", "service"), ("e-src", "node"), ("e-peer", "node"))
    fleet = Fleet(root=tmp_path)
    with mosquitto_etc() as etc:
        try:
            start_broker(fleet, kind, etc, users)
            await asyncio.to_thread(wait_port, fleet.port, 30)
            for node in ("e-src", "e-peer"):
                start_agent(fleet, node)
            config = BusConfig(
                host="127.0.0.1", port=fleet.port, client_id="migrator", username="migrator",
                password=fleet.password("migrator"), reconnect_base=0.1, reconnect_cap=1.0,
            )  # fmt: skip
            async with Bus(config) as bus:
                seen: set[str] = set()

                async def on_beat(beat: Heartbeat, ctx: MessageContext) -> None:
                    seen.add(beat.node)

                bus.subscribe(topics.node_filter("heartbeat"), Heartbeat, on_beat)
                await wait_for(lambda: seen >= {"e-src", "e-peer"}, 60, "both agents beat")
                data = os.urandom(2 * CHUNK + 123)
                staged = Handover(tmp_path / "e-src" / "handover")
                snapshot, size, digest = staged.stage_out(KEY, data)
                frozen = FrozenReply(correlation_id=new_id(), workload=WORKLOAD,
                                     snapshot=snapshot, size=size, sha256=digest)  # fmt: skip
                await hand_over(
                    _Migrator(bus), TENANT, workload=WORKLOAD, source="e-src", peer="e-peer",
                    frozen=frozen, chunk_bytes=CHUNK, stall_s=10.0,
                )  # fmt: skip
                ready = Handover(tmp_path / "e-peer" / "handover").ready_path(KEY)
                assert ready.read_bytes() == data
        except BaseException:
            print(fleet.logs())
            raise
        finally:
            fleet.stop()
