"""The CLI's connection to a real embedded broker: no noise in the broker's log, and a refused
account is one clear line."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fogmesh.bus import MessageContext
from fogmesh.cli import queries
from fogmesh.cli.session import CliSettings, connect
from fogmesh.protocol import Event, EventKind, topics
from tests.support.mesh import MeshProcess, start_alone
from tests.support.mesh_file import PASSWORDS
from tests.support.mqtt import client, eventually_delivered

FOGMESH = str(Path(sys.executable).with_name("fogmesh"))


def _fogmesh(port: int, user: str, password: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FOGMESH_USERNAME": user, "FOGMESH_PASSWORD": password}
    return subprocess.run(
        [FOGMESH, "--broker", f"127.0.0.1:{port}", "--timeout", "2", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


def test_a_command_leaves_no_error_in_the_broker_log(
    tmp_path: Path, procs: list[MeshProcess]
) -> None:
    broker, port = start_alone(tmp_path, procs, "site")
    # the test's own TCP wait for the port is logged (later) as "No data": look only after it
    time.sleep(1.5)
    since = time.strftime("%Y-%m-%d %H:%M:%S")
    # no scheduler answers: the command times out, after a full connect and disconnect
    done = _fogmesh(port, "acme", PASSWORDS["acme"], "--tenant", "acme", "apps")
    assert "Traceback" not in done.stderr
    assert "cannot reach" not in done.stderr
    broker.stop()
    lines = broker.log.read_text(errors="replace").splitlines()
    log = "\n".join(line for line in lines if line[:19] >= since)
    assert "connections acquired" in log, "the command never reached the broker"
    assert "ERROR" not in log, log
    assert "WARNING" not in log, log
    assert "No data from" not in log, log


def test_a_refused_account_is_one_line(tmp_path: Path, procs: list[MeshProcess]) -> None:
    port = start_alone(tmp_path, procs, "site")[1]
    done = _fogmesh(port, "acme", "wrong", "apps")
    assert done.returncode == 3
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "refused the connection as acme" in lines[0]


@pytest.mark.parametrize(
    ("user", "expected"),
    [("acme", {"workload-state"}), ("svc", {"workload-state", "node-joined"})],
    ids=["tenant-own-account", "operator-for-tenant"],
)
async def test_follow_subscribes_only_to_what_the_account_reads(
    tmp_path: Path, procs: list[MeshProcess], user: str, expected: set[str]
) -> None:
    port = start_alone(tmp_path, procs, "site")[1]
    settings = CliSettings(
        port=port, tenant="acme", username=user, password=PASSWORDS[user], timeout=20
    )
    got: list[Event] = []

    async def on_event(event: Event, _ctx: MessageContext) -> None:
        got.append(event)

    async with connect(settings) as bus, client(port, "svc") as svc:
        filters = queries.follow_events(bus, settings, on_event)
        assert any("/events/tenants/acme/" in f for f in filters)
        assert any("/events/fleet/" in f for f in filters) == ("node-joined" in expected)
        events = [
            (topics.fleet_event("node-joined"), Event(kind=EventKind.NODE_JOINED, node="n1")),
            (
                topics.tenant_event("globex", "workload-state"),
                Event(kind=EventKind.WORKLOAD_STATE, tenant="globex"),
            ),
            (
                topics.tenant_event("acme", "workload-state"),
                Event(kind=EventKind.WORKLOAD_STATE, tenant="acme"),
            ),
        ]

        async def publish() -> None:
            for topic, event in events:
                await svc.publish(topic, event.model_dump_json(), qos=1)

        await eventually_delivered(
            publish, lambda: {e.kind.value for e in got} >= expected, timeout=60
        )
    assert {e.kind.value for e in got} == expected
    assert all(e.tenant in (None, "acme") for e in got)
