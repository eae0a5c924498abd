"""The sample app as native processes against real brokers (amqtt and Mosquitto)."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

from fogmesh_sample.convolve import convolve, summarize

from tests.sample_app.helpers import (
    AppProcess,
    Collector,
    Names,
    app_env,
    count_lines,
    running,
    send_readings,
    sensor_env,
    subscribed,
    wait_for,
)
from tests.support.brokers import BrokerProcess, free_port


def assert_outputs_match_inputs(collector: Collector, seqs: set[int]) -> None:
    """Every seq has a result, and each result is the convolution of that seq's reading."""
    for seq in sorted(seqs):
        out = collector.outputs[seq]
        reading = collector.inputs[seq]
        expected = summarize(convolve(reading["matrix"]))
        assert out["ts_in"] == reading["ts"]
        assert out["ts_out"] >= out["ts_in"] - 1.0  # same host clock; no latency assertion
        assert out["ops"] == {"multiplications": 5000, "additions": 2500}
        assert out["kernel"] == [[0.5, 0.5]]
        assert out["result"]["rows"] == out["result"]["cols"] == 50
        for key in ("sum", "min", "max", "mean"):
            assert math.isclose(out["result"][key], expected[key], rel_tol=1e-9, abs_tol=1e-9)
        assert out["compute_ms"] >= 0.0


def test_sensor_to_convolver_to_subscriber(broker: BrokerProcess, tmp_path: Path) -> None:
    """Sensor and convolver as ``python -m`` subprocesses: every reading gets its result, the
    result is the right convolution, and both exit 0 (the sensor after --count, the convolver on
    SIGTERM)."""
    names = Names()
    env = app_env(broker, names.tenant, names.app, FM_CLIENT_ID=f"{names.tenant}-conv")
    conv = AppProcess("convolve", env, tmp_path / "convolve.log")
    with Collector(broker, names) as collector, running(conv):
        subscribed("the convolver", conv)
        sensor = send_readings(sensor_env(env, names.tenant, "20"), tmp_path / "sensor.log", 20, 1)
        want = set(range(20))
        wait_for("20 results on .../out", lambda: collector.seqs_out() >= want)
        wait_for("20 readings on .../in", lambda: collector.seqs_in() >= want)
        assert_outputs_match_inputs(collector, want)
        assert conv.terminate() == 0, conv.log()
    assert "SIGTERM: stopping" in conv.log()
    assert "published and acknowledged 20 readings" in sensor.log()


def test_readings_queued_while_the_convolver_is_away_are_not_lost(
    broker: BrokerProcess, tmp_path: Path
) -> None:
    """Stop the convolver (SIGTERM), publish 15 readings, start it again with the same client id:
    the broker kept its persistent session and QoS 1 subscription, so all 15 are convolved."""
    names = Names()
    env = app_env(broker, names.tenant, names.app, FM_CLIENT_ID=f"{names.tenant}-conv")
    with Collector(broker, names) as collector:
        first = AppProcess("convolve", env, tmp_path / "convolve-1.log")
        with running(first):
            subscribed("the convolver", first)
            assert first.terminate() == 0, first.log()

        send_readings(sensor_env(env, names.tenant), tmp_path / "sensor.log", 15, 2)
        want = set(range(15))
        wait_for("15 readings on .../in", lambda: collector.seqs_in() >= want)
        assert collector.seqs_out() == set()  # nobody convolved them yet

        second = AppProcess("convolve", env, tmp_path / "convolve-2.log")
        with running(second):
            wait_for("the 15 queued readings to be convolved", lambda: collector.seqs_out() >= want)
            assert_outputs_match_inputs(collector, want)
            assert second.terminate() == 0, second.log()
    assert "session present: True" in second.log()


def test_convolver_rides_out_a_broker_restart(broker: BrokerProcess, tmp_path: Path) -> None:
    """Kill the broker under a running convolver, start it again on the same port: the convolver
    reconnects (jittered back-off) and convolves readings sent afterwards."""
    names = Names()
    env = app_env(broker, names.tenant, names.app, FM_CLIENT_ID=f"{names.tenant}-conv")
    conv = AppProcess("convolve", env, tmp_path / "convolve.log")
    with running(conv):
        subscribed("the convolver", conv)
        broker.kill()
        wait_for("the convolver to notice", lambda: "lost the broker" in conv.log())
        # Let it fail a few reconnects before the broker comes back.
        wait_for("a failed reconnect", lambda: "unreachable" in conv.log())
        broker.start()
        wait_for(
            "the convolver to connect again",
            lambda: count_lines(conv.log(), "connected to") >= 2,
        )
        wait_for(
            "the convolver to subscribe again", lambda: count_lines(conv.log(), "subscribed") >= 2
        )
        with Collector(broker, names) as collector:
            send_readings(sensor_env(env, names.tenant), tmp_path / "sensor.log", 5, 3)
            want = set(range(5))
            wait_for("5 results after the restart", lambda: collector.seqs_out() >= want)
            assert_outputs_match_inputs(collector, want)
        assert conv.terminate() == 0, conv.log()


def retried_twice(app: AppProcess) -> Callable[[], bool]:
    return lambda: count_lines(app.log(), "unreachable") >= 2


def test_sigterm_while_the_broker_is_away_exits_cleanly(tmp_path: Path) -> None:
    """No broker at all: both components keep retrying (logging each failure) and still exit 0
    promptly on SIGTERM, as the node agent stops workloads."""
    port = free_port()
    env = {
        "FM_BROKER_HOST": "127.0.0.1",
        "FM_BROKER_PORT": str(port),
        "FM_TENANT": "t",
        "FM_APP": "a",
        "FM_CLIENT_ID": f"nobroker-{port}",
    }
    for component in ("convolve", "sensor"):
        app = AppProcess(component, env, tmp_path / f"{component}.log")
        with running(app):
            wait_for("two failed connection attempts", retried_twice(app))
            assert app.terminate() == 0, app.log()
