"""Nodes that join with a single-use token, and nodes revoked while connected."""

from __future__ import annotations

import asyncio
import json
import stat
import time
from pathlib import Path

import aiomqtt
import pytest

from fogmesh.agent.config import AgentConfig
from fogmesh.agent.join import CREDENTIAL_FILE, JoinFailed, prepare, redeem
from fogmesh.protocol import topics
from tests.security.conftest import fogmesh
from tests.support.mesh import MeshProcess, start_alone
from tests.support.mqtt import client, wait_for

_REFUSED_WAIT = 8.0  # how long a refused token is given to be admitted after all


@pytest.fixture
def port(tmp_path: Path, procs: list[MeshProcess]) -> int:
    return start_alone(tmp_path, procs, "site")[1]


def _agent_config(port: int, state_dir: Path, node: str | None = None) -> AgentConfig:
    return AgentConfig.model_validate(
        {"node_id": node, "state_dir": state_dir, "broker": {"host": "127.0.0.1", "port": port}}
    )


async def _ends(c: aiomqtt.Client) -> None:
    with pytest.raises(aiomqtt.MqttError):
        async for _ in c.messages:
            pass


async def test_a_token_joins_a_node_once(port: int, tmp_path: Path) -> None:
    token = fogmesh(port, "node", "token", "--node", "edge-7").strip()
    config = await prepare(_agent_config(port, tmp_path / "a"), token)
    assert (config.node_id, config.broker.username) == ("edge-7", "edge-7")
    stored = tmp_path / "a" / CREDENTIAL_FILE
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert config.broker.password
    assert token.partition(".")[2] not in stored.read_text()
    got: list[aiomqtt.Message] = []
    async with client(port, "svc") as svc:
        await svc.subscribe(topics.node("edge-7", "state"), qos=1)
        reader = asyncio.create_task(_collect(svc, got))
        async with client(
            port, "edge-7", ident="edge-7-agent", password=config.broker.password
        ) as n:
            await n.publish(topics.node("edge-7", "state"), b"joined", qos=1)
            await wait_for(lambda: bool(got), what="the joined node's state")
        reader.cancel()
    # the stored credential is used from then on: no token needed, the same account
    again = await prepare(_agent_config(port, tmp_path / "a"), None)
    assert (again.broker.username, again.broker.password) == ("edge-7", config.broker.password)
    # the token is spent: another agent cannot use it
    with pytest.raises(JoinFailed):
        await redeem(_agent_config(port, tmp_path / "b"), token, timeout=_REFUSED_WAIT)
    assert not (tmp_path / "b" / CREDENTIAL_FILE).exists()


async def test_a_token_names_the_node_or_the_agent_does(port: int, tmp_path: Path) -> None:
    token = fogmesh(port, "node", "token").strip()
    config = await prepare(_agent_config(port, tmp_path / "a", node="rover-3"), token)
    assert (config.node_id, config.broker.username) == ("rover-3", "rover-3")


async def test_an_expired_token_is_refused(port: int, tmp_path: Path) -> None:
    token = fogmesh(port, "node", "token", "--node", "edge-8", "--ttl", "1s").strip()
    issued = time.time()  # the token expires within a second of being retained, before this
    while time.time() < issued + 1.5:  # outlive the token (a wait, not a timing assertion)
        await asyncio.sleep(0.2)
    with pytest.raises(JoinFailed):
        await redeem(_agent_config(port, tmp_path / "a"), token, timeout=_REFUSED_WAIT)


async def test_the_bootstrap_account_may_only_ask_to_join(port: int) -> None:
    token = fogmesh(port, "node", "token", "--node", "edge-9").strip()
    token_id, _, secret = token.partition(".")
    got: list[aiomqtt.Message] = []
    async with client(port, "svc") as svc:
        await svc.subscribe("fm/v1/#", qos=1)
        reader = asyncio.create_task(_collect(svc, got))
        async with client(port, f"join-{token_id}", password=secret) as joiner:
            await joiner.publish(topics.node("edge-9", "state"), b"forged", qos=1)
            await joiner.publish(topics.api("acme", "apps", "list"), b"forged", qos=1)
            await joiner.publish("fm/v1/accounts/edge-9", b"forged", qos=1)
            await joiner.publish(f"fm/v1/join/join-{token_id}", b"not-json", qos=1)
        await wait_for(lambda: any(bytes(m.payload) == b"not-json" for m in got), what="join")
        reader.cancel()
    assert [bytes(m.payload) for m in got if bytes(m.payload) == b"forged"] == []


async def test_a_revoked_node_loses_its_session_and_is_refused(port: int, tmp_path: Path) -> None:
    token = fogmesh(port, "node", "token", "--node", "edge-6").strip()
    config = await prepare(_agent_config(port, tmp_path / "a"), token)
    password = config.broker.password
    older = fogmesh(port, "node", "token", "--node", "edge-6").strip()
    async with client(port, "edge-6", ident="edge-6-agent", password=password) as node:
        await node.subscribe(topics.node("edge-6", "desired"), qos=1)
        fogmesh(port, "node", "revoke", "edge-6")
        await asyncio.wait_for(_ends(node), timeout=60)
    with pytest.raises(aiomqtt.MqttError):
        async with client(port, "edge-6", ident="edge-6-agent", password=password):
            pass
    # a token issued before the revocation does not bring the node back (one issued after it
    # does: that is the operator's decision)
    with pytest.raises(JoinFailed, match="revoked after this token"):
        await redeem(_agent_config(port, tmp_path / "b"), older)


async def _collect(c: aiomqtt.Client, sink: list[aiomqtt.Message]) -> None:
    async for msg in c.messages:
        sink.append(msg)


async def test_the_agent_process_joins_with_its_flag_and_keeps_its_credential(
    port: int, tmp_path: Path
) -> None:
    from tests.agent.support import AgentProc

    token = fogmesh(port, "node", "token", "--node", "edge-2").strip()
    state = tmp_path / "agent-state"
    hellos: list[aiomqtt.Message] = []
    async with client(port, "svc") as svc:
        await svc.subscribe(topics.node("edge-2", "heartbeat"), qos=1)
        reader = asyncio.create_task(_collect(svc, hellos))
        agent = AgentProc("edge-2", port, state, "fogmesh.test=security",
                          ["--runtimes", "native", "--join-token", token])  # fmt: skip
        agent.start()
        try:
            await wait_for(lambda: bool(hellos), what="the joined agent's heartbeat")
            agent.stop()
            assert stat.S_IMODE((state / CREDENTIAL_FILE).stat().st_mode) == 0o600
            # started again with the spent token: the stored credential is what it uses
            hellos.clear()
            agent.start()
            await wait_for(lambda: bool(hellos), what="the agent's heartbeat after a restart")
        finally:
            agent.stop()
            reader.cancel()


async def test_a_malformed_join_request_gets_an_error_reply(port: int) -> None:
    token = fogmesh(port, "node", "token", "--node", "edge-1").strip()
    token_id, _, secret = token.partition(".")
    me = f"join-{token_id}"
    got: list[aiomqtt.Message] = []
    async with client(port, me, ident=f"{me}-x", password=secret) as joiner:
        await joiner.subscribe(f"fm/v1/reply/{me}/#", qos=1)
        reader = asyncio.create_task(_collect(joiner, got))
        bad = {"reply_to": f"fm/v1/reply/{me}/{me}-x", "correlation_id": "c-1", "nod": "x"}
        await joiner.publish(f"fm/v1/join/{me}", json.dumps(bad).encode(), qos=1)
        await wait_for(lambda: bool(got), what="the error reply")
        reader.cancel()
    payload = got[0].payload
    assert isinstance(payload, bytes)
    reply = json.loads(payload)
    assert (reply["ok"], reply["correlation_id"], reply["error"]["code"]) == (
        False, "c-1", "invalid_payload",
    )  # fmt: skip
