"""A subscription the broker refuses is said out loud and retried, never silently missing.

The embedded broker refuses a tenant's subscription outside its ACL with SUBACK 0x80; a
clustered broker does the same for a few seconds while it re-elects after a member died. The
bus logs the refusal, keeps its connection (every other filter goes on working) and retries.
"""

from __future__ import annotations

from pathlib import Path

import structlog

from fogmesh.bus import Bus, BusConfig, MessageContext, RawMessage
from fogmesh.protocol import topics
from tests.support.buses import eventually
from tests.support.mesh import MeshProcess, start_alone
from tests.support.mesh_file import PASSWORDS
from tests.support.mqtt import client


async def test_refused_subscription_is_logged_and_the_rest_keeps_working(
    tmp_path: Path, procs: list[MeshProcess]
) -> None:
    _, port = start_alone(tmp_path, procs, "site")
    await _refused_and_kept(port)


async def _refused_and_kept(port: int) -> None:
    config = BusConfig(
        host="127.0.0.1", port=port, client_id="acme-refused", username="acme",
        password=PASSWORDS["acme"], reconnect_base=0.1, reconnect_cap=0.5,
    )  # fmt: skip
    got: list[bytes] = []

    async def keep(msg: RawMessage, ctx: MessageContext) -> None:
        got.append(msg.payload)

    with structlog.testing.capture_logs() as logs:
        async with Bus(config) as bus:
            bus.subscribe(topics.data("globex", "app", "out"), RawMessage, keep)  # refused
            bus.subscribe(topics.data("acme", "app", "out"), RawMessage, keep)  # allowed
            await bus.wait_connected(timeout=20)
            await eventually(
                lambda: any(e["event"] == "subscription refused; retrying" for e in logs),
                what="the refusal in the log",
            )
            connects = bus.connects
            async with client(port, "svc") as svc:
                await svc.publish(topics.data("globex", "app", "out"), b"theirs", qos=1)
                await svc.publish(topics.data("acme", "app", "out"), b"ours", qos=1)
            await eventually(lambda: got == [b"ours"], what="the allowed filter's message")
            assert bus.connects == connects  # the refusal did not cost the connection
    refused = [e for e in logs if e["event"] == "subscription refused; retrying"]
    assert refused[0]["filters"] == [topics.data("globex", "app", "out")]
