"""The clustered cloud tier: three ``nats-server`` members on loopback, started exactly from the
files ``fogmesh-broker render-nats`` writes, their MQTT gateway keeping sessions and retained
messages in JetStream replicated on every member.

Killing (SIGKILL) the member a service is connected to loses no acknowledged QoS 1 message and
no retained desired state: the bus reconnects to the next member of its failover list and its
persistent session delivers the rest. A site link (``fogmesh-broker run``) carries both ways
through the cluster.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from fogmesh.broker.config import MeshConfigError, load_mesh
from fogmesh.broker.nats import password_env, render_nats, subjects_of
from fogmesh.bus import Bus, BusConfig, MessageContext, RawMessage
from fogmesh.protocol import topics
from fogmesh.service import BrokerSettings
from tests.support.brokers import REPO
from tests.support.mesh import MeshProcess
from tests.support.mesh_file import PASSWORDS, broker_spec, port_of, write_mesh
from tests.support.mqtt import client, collect, eventually_delivered, wait_for
from tests.support.nats_cluster import Cluster, Member, cluster_mesh, nats_cluster, wait_ready

pytestmark = pytest.mark.nats

MESSAGES = 300  # QoS 1 messages published across the kill


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """Render with the CLI and start ``nats-server -c member-N.conf`` for each member."""
    with nats_cluster(tmp_path) as running:
        yield running


async def _wait_ready(cluster: Cluster) -> None:
    await wait_ready(cluster)


def _granted(codes: Any) -> bool:
    """A SUBACK granted every filter (paho gives ints or ReasonCodes; 128 is failure)."""
    return all(int(getattr(code, "value", code)) < 128 for code in codes)


def _bus(port: int, client_id: str, failover: list[int] | None = None) -> Bus:
    return Bus(
        BusConfig(
            port=port,
            client_id=client_id,
            username="svc",
            password=PASSWORDS["svc"],
            keepalive=5,
            reconnect_base=0.1,
            reconnect_cap=1.0,
            failover=tuple(("127.0.0.1", p) for p in failover or []),
        )
    )


async def test_member_kill_loses_no_acknowledged_message_nor_retained_state(
    cluster: Cluster,
) -> None:
    await _wait_ready(cluster)
    first, second, third = (m.mqtt_port for m in cluster.members)
    desired = topics.node("node-a", "desired")
    got: list[int] = []
    desired_seen: list[bytes] = []

    async def on_tele(message: RawMessage, ctx: MessageContext) -> None:
        got.append(int(message.payload))

    async def on_desired(message: RawMessage, ctx: MessageContext) -> None:
        desired_seen.append(message.payload)

    # the scheduler writes desired state on the member that is about to die
    async with client(first, "svc") as scheduler:
        await scheduler.publish(desired, b'{"generation": 7}', qos=1, retain=True)

    acked: list[int] = []
    refused = 0
    service = _bus(first, "svc-registry", failover=[second, third])
    service.subscribe("tele/kill/#", RawMessage, on_tele)
    service.subscribe(desired, RawMessage, on_desired)
    async with service, _bus(second, "svc-publisher") as publisher:
        await service.wait_connected(timeout=30)
        await publisher.wait_connected(timeout=30)
        await wait_for(lambda: bool(desired_seen), what="the retained desired state")

        async def publish_all() -> None:
            nonlocal refused
            for seq in range(MESSAGES):
                try:
                    await publisher.publish_raw(f"tele/kill/{seq % 7}", b"%d" % seq, queue=False)
                    acked.append(seq)
                except Exception:  # a refused publish is counted, never acknowledged
                    refused += 1
                await asyncio.sleep(0.01)

        sending = asyncio.create_task(publish_all())
        await wait_for(lambda: len(got) >= MESSAGES // 3, what="the first third")
        seen_before = len(desired_seen)
        cluster.members[0].kill()  # the member the service is connected to
        killed_at = time.monotonic()
        await sending
        await wait_for(
            lambda: set(acked) <= set(got), timeout=90, what="every acknowledged message"
        )
        recovered_s = time.monotonic() - killed_at
        # the reconnect re-subscribed and the replicated retained store answered
        await wait_for(lambda: len(desired_seen) > seen_before, what="desired after failover")
    lost = sorted(set(acked) - set(got))
    print(  # the figures docs/cluster.md quotes
        f"nats member kill: published {MESSAGES}, acknowledged {len(acked)}, refused {refused},"
        f" received {len(set(got))} distinct ({len(got) - len(set(got))} duplicates),"
        f" lost {len(lost)}, all in {recovered_s:.1f}s after the kill"
    )
    assert lost == []
    assert desired_seen[-1] == b'{"generation": 7}'
    # a service that connects afresh to a surviving member reads the same retained state
    async with client(third, "svc") as fresh:
        # while JetStream re-elects the dead member's leaders, NATS may refuse a new QoS 1
        # subscription (SUBACK 0x80, "consumer create timed out"): ask again until it is granted
        deadline = time.monotonic() + 60
        while not _granted(await fresh.subscribe(desired, qos=1, timeout=20)):
            assert time.monotonic() < deadline, "the subscription was never granted"
            await asyncio.sleep(0.5)
        async with asyncio.timeout(30):
            message = await anext(aiter(fresh.messages))
    assert message.retain
    assert message.payload == b'{"generation": 7}'


async def test_site_link_carries_both_ways_through_the_cluster(
    cluster: Cluster, procs: list[MeshProcess]
) -> None:
    await _wait_ready(cluster)
    procs.append(MeshProcess(cluster.mesh, "site").start())
    site = port_of(cluster.mesh, "site")
    _first, second, third = (m.mqtt_port for m in cluster.members)
    at_cloud: list[aiomqtt.Message] = []
    at_site: list[aiomqtt.Message] = []
    # the link reaches member 1; the cloud's clients sit on the other two
    async with client(site) as s, client(second) as c2, client(third) as c3:
        await c3.subscribe("tele/#", qos=1)
        await s.subscribe("cmd/#", qos=1)
        tasks = [
            asyncio.create_task(collect(c3, at_cloud)),
            asyncio.create_task(collect(s, at_site)),
        ]
        await eventually_delivered(
            lambda: s.publish("tele/site/t", b"from-site", qos=1),
            lambda: any(m.payload == b"from-site" for m in at_cloud),
        )
        await eventually_delivered(
            lambda: c2.publish("cmd/site/x", b"from-cloud", qos=1),
            lambda: any(m.payload == b"from-cloud" for m in at_site),
        )
        for t in tasks:
            t.cancel()


async def test_tenants_stay_apart_on_the_cluster(cluster: Cluster) -> None:
    """The rendered permissions: a tenant reads neither another tenant's data or replies nor,
    through the gateway's own ``$MQTT.sub`` delivery subjects, another session's QoS 1 queue."""
    await _wait_ready(cluster)
    first, second, _third = (m.mqtt_port for m in cluster.members)
    at_globex: list[aiomqtt.Message] = []
    at_acme: list[aiomqtt.Message] = []
    async with (
        client(first, "globex", ident="globex-app", clean=False) as globex,
        client(second, "acme", ident="acme-spy") as acme,
        client(second, "svc") as svc,
    ):
        await globex.subscribe("fm/v1/data/globex/#", qos=1)
        await globex.subscribe(topics.reply("globex", "globex-app"), qos=1)
        for flt in ("$MQTT/sub/#", "$MQTT/#", "fm/v1/data/globex/#", "fm/v1/reply/globex/#"):
            await acme.subscribe(flt, qos=1)
        await acme.subscribe("$MQTT/sub/+", qos=0)  # a plain NATS interest, no consumer
        tasks = [
            asyncio.create_task(collect(globex, at_globex)),
            asyncio.create_task(collect(acme, at_acme)),
        ]
        await svc.publish("fm/v1/data/globex/readings", b"globex-data", qos=1)
        await svc.publish(topics.reply("globex", "globex-app"), b"globex-reply", qos=1)
        # a tenant cannot forge a reply, nor write another tenant's data
        await acme.publish(topics.reply("globex", "globex-app"), b"forged", qos=1)
        await acme.publish("fm/v1/data/globex/readings", b"forged-data", qos=1)
        await wait_for(lambda: len(at_globex) >= 2, what="globex's own messages")
        await asyncio.sleep(1.0)  # time for anything refused to show up anyway
        for t in tasks:
            t.cancel()
    assert sorted(bytes(m.payload) for m in at_globex) == [b"globex-data", b"globex-reply"]
    assert at_acme == []


def test_topic_filters_become_subjects() -> None:
    assert subjects_of("fm/v1/nodes/+/state") == ["fm.v1.nodes.*.state"]
    assert subjects_of("fm/v1/reply/acme/#") == ["fm.v1.reply.acme", "fm.v1.reply.acme.>"]
    assert subjects_of("#") == [">"]
    for bad in ("fm/v1/data/a.b", "fm//x", "a b"):
        with pytest.raises(MeshConfigError):
            subjects_of(bad)


def test_render_refuses_what_nats_cannot_express(tmp_path: Path) -> None:
    """A grant by client id, or a cluster that lists other members than asked for."""
    mesh, _members = cluster_mesh(tmp_path)
    spec = load_mesh(mesh)
    with pytest.raises(MeshConfigError, match="members"):
        render_nats(spec, "cloud", tmp_path / "out", members=5)
    by_client = write_mesh(
        tmp_path / "client.yaml",
        {
            "cloud": broker_spec(
                tmp_path,
                "cloud",
                kind="nats",
                roles={"tenant": {"subscribe": ["fm/v1/reply/{client}/#"]}},
            )
        },
        [],
    )
    with pytest.raises(MeshConfigError, match="client"):
        render_nats(load_mesh(by_client), "cloud", tmp_path / "out2")
    # without listed members, --members N renders N on free loopback ports
    bare = write_mesh(tmp_path / "bare.yaml", {"cloud": broker_spec(tmp_path, "cloud")}, [])
    written, notes = render_nats(load_mesh(bare), "cloud", tmp_path / "out3", members=2, environ={})
    names = ["accounts.conf", "member-1.conf", "member-2.conf"]
    assert sorted(p.name for p in written) == names
    assert "FOGMESH_NATS_PASSWORD_NODE_A" in notes[-1]
    assert "$FOGMESH_NATS_PASSWORD_SVC" in (tmp_path / "out3" / "accounts.conf").read_text()


def test_existing_mesh_files_stay_valid() -> None:
    for path in sorted((REPO / "deploy").rglob("*.yaml")):
        if "brokers:" in path.read_text():
            load_mesh(path)


def test_broker_settings_carry_a_failover_list() -> None:
    settings = BrokerSettings(port=1883, failover=["10.0.0.2:1884", "[::1]:1885"])
    config = settings.bus_config("svc")
    assert config.failover == (("10.0.0.2", 1884), ("::1", 1885))
    assert [config.endpoint(turn) for turn in range(4)] == [
        ("127.0.0.1", 1883),
        ("10.0.0.2", 1884),
        ("::1", 1885),
        ("127.0.0.1", 1883),
    ]
    with pytest.raises(ValueError, match="host:port"):
        BrokerSettings(failover=["10.0.0.2"])


_NATS = shutil.which("nats-server") or "/usr/sbin/nats-server"


def _lone_mesh(tmp_path: Path) -> Path:
    spec = {"cloud": broker_spec(tmp_path, "c", kind="nats")}
    return write_mesh(tmp_path / "mesh.yaml", spec, [])


async def test_any_password_starts_the_members(tmp_path: Path) -> None:
    """A password NATS would parse as a number, several tokens or a variable: set where
    ``render-nats`` runs, it is written quoted into ``accounts.conf`` (then mode 0600), the
    members start and take it (from a member's own environment such a value stops it)."""
    password = '1e5 two "words" $and'
    mesh, specs = cluster_mesh(tmp_path)
    out = tmp_path / "nats"
    render_nats(load_mesh(mesh), "cloud", out, environ={password_env("svc"): password})
    assert oct((out / "accounts.conf").stat().st_mode & 0o777) == "0o600"
    members = [
        Member(out / f"member-{i + 1}.conf", s["mqtt_port"], s["monitor_port"])
        for i, s in enumerate(specs)
    ]
    for i, member in enumerate(members):
        member.start(tmp_path / f"member-{i + 1}.log")  # svc's variable, if read, is not this
    try:
        deadline = time.monotonic() + 120
        while True:
            for member in members:
                assert member.proc is not None
                assert member.proc.poll() is None, "a member stopped"
            try:
                async with client(members[0].mqtt_port, "svc", password=password):
                    break
            except aiomqtt.MqttError:
                assert time.monotonic() < deadline, "the member never took the password"
                await asyncio.sleep(0.5)
        with pytest.raises(aiomqtt.MqttError):
            async with client(members[0].mqtt_port, "svc", password=PASSWORDS["svc"]):
                pass
    finally:
        for member in members:
            member.kill()


def test_a_password_left_to_the_environment_is_parsed_by_nats(tmp_path: Path) -> None:
    """Why render-nats quotes: unset where it ran, ``1e5`` in the member's environment
    is a malformed number to NATS, and the member refuses to start."""
    out = tmp_path / "nats"
    mesh = write_mesh(
        tmp_path / "mesh.yaml", {"cloud": broker_spec(tmp_path, "c", kind="nats")}, []
    )
    _written, notes = render_nats(load_mesh(mesh), "cloud", out, members=1, environ={})
    assert password_env("svc") in notes[-1]
    env = {**os.environ, **{password_env(u): pw for u, pw in PASSWORDS.items()}}
    env[password_env("svc")] = "1e5"
    checked = subprocess.run(
        [
            shutil.which("nats-server") or "/usr/sbin/nats-server",
            "-t",
            "-c",
            str(out / "member-1.conf"),
        ],
        capture_output=True,
        env=env,
        timeout=30,
        check=False,
    )
    assert checked.returncode != 0
    assert b"could not be parsed" in checked.stdout + checked.stderr
