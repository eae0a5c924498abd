"""The loss a chaos run found (seed 12): readings queued for a replica that is then moved.

Under a node agent the sample app's client id was ``{workload}-{node}``
(``fogmesh_sample.runtime``), a persistent session per replica *and node*; it is now
``{tenant}-{workload}``, the replica's on any node, which this test holds to. In the run, the
site broker of the convolver's node was SIGKILLed; the node's agent came back after its
reconnect back-off, too late for the registry (edge-3 offline), and the scheduler placed the
convolver on the site's other node. The old replica never reconnected before its agent stopped
it: the 23 readings that the sensor's broker had acknowledged meanwhile stayed queued for
``...-convolve-0-edge-3`` in the site broker's store (``queued`` rows), and the new replica,
``...-convolve-0-edge-1``, started with an empty session. Nothing acknowledged should be lost,
so this is the hole in its smallest form: a replica away, readings published, the replica placed
on another node.
"""

from __future__ import annotations

from pathlib import Path

from tests.sample_app.helpers import AppProcess, Collector, Names, app_env, running, wait_for
from tests.support.brokers import BrokerProcess


def test_readings_queued_for_a_moved_replica_reach_the_new_one(
    amqtt_broker: BrokerProcess, tmp_path: Path
) -> None:
    names = Names()
    env = app_env(amqtt_broker, names.tenant, names.app, FOGMESH_WORKLOAD="convolve-0")
    sensor_env = {**env, "FM_CLIENT_ID": f"{names.tenant}-sensor", "FM_RATE_HZ": "25"}
    with Collector(amqtt_broker, names) as collector:
        old = AppProcess("convolve", {**env, "FOGMESH_NODE": "edge-3"}, tmp_path / "old.log")
        with running(old):
            wait_for("the old replica to subscribe", lambda: "subscribed" in old.log())
            assert old.terminate() == 0, old.log()
        away = AppProcess(
            "sensor", sensor_env, tmp_path / "sensor.log", args=("--count", "10", "--seed", "4")
        )
        with running(away):
            assert away.wait() == 0, away.log()
        want = set(range(10))
        wait_for("10 readings on .../in", lambda: collector.seqs_in() >= want)

        moved = AppProcess("convolve", {**env, "FOGMESH_NODE": "edge-1"}, tmp_path / "new.log")
        with running(moved):
            wait_for("the moved replica to subscribe", lambda: "subscribed" in moved.log())
            wait_for(
                "the readings queued for the old replica to be convolved",
                lambda: collector.seqs_out() >= want,
                timeout=10,
            )
