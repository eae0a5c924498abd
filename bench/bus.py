"""Request / reply round trip through the bus client against a raw aiomqtt echo, same run.

Both sides use QoS 1 on the same broker; the raw echo is the floor the bus client is measured
against (goal: the client adds at most 20% to the raw round trip's p50). Beside the wall-clock
times, the process's CPU time per round trip (both ends of each pair run in this process): on a
shared machine it moves far less with the load than the wall clock. Also the QoS 1 throughput
of one subscription: a burst of messages from a raw publisher until the bus's handler has seen
them all (each acknowledged only after its handler returned). Runs on the embedded amqtt broker
and on Mosquitto.

With ``--baseline DIR`` (a tree holding the code before a change, e.g. ``git archive <commit>
protocol | tar -x -C DIR``) each measurement runs in a child process, the current code and the
baseline (``DIR/protocol/src`` first on ``PYTHONPATH``) alternated ``--pairs`` times in the same
minutes; ``results`` holds the current code's median pair, ``baseline`` the baseline's, and
``pairs`` every one of them.

Usage: python bench/bus.py [--rounds 5] [--per-round 200] [--burst 1000] [--baseline DIR --pairs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import aiomqtt
from _common import load_average, summarise, write_result

from fogmesh.bus import Bus, BusConfig, MessageContext, RawMessage
from fogmesh.protocol import AckReply, RestartCommand, topics
from fogmesh.service import configure_logging
from tests.support.brokers import BrokerProcess

# The same socket option the bus client sets, so the floor is a fair one.
NODELAY = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
WINDOW = 50  # QoS 1 publishes of the burst in flight at once
GOAL_PERCENT = 20  # issue #13: the bus adds at most this to the raw round trip's p50


async def _raw_round_trips(port: int, count: int) -> tuple[list[float], float]:
    """``count`` round trips' wall-clock seconds, and the CPU seconds they took in all."""
    req, rep = "bench/raw/req", "bench/raw/rep"
    samples: list[float] = []
    async with (
        aiomqtt.Client(
            "127.0.0.1", port, identifier="raw-echo", username="raw-echo", socket_options=NODELAY
        ) as echo,
        aiomqtt.Client(
            "127.0.0.1",
            port,
            identifier="raw-client",
            username="raw-client",
            socket_options=NODELAY,
        ) as cli,
    ):
        await echo.subscribe(req, qos=1)
        await cli.subscribe(rep, qos=1)

        async def serve() -> None:
            async for message in echo.messages:
                await echo.publish(rep, message.payload, qos=1)

        server = asyncio.create_task(serve())
        replies = cli.messages
        payload = RestartCommand(workload="w", reply_to=rep).model_dump_json()
        cpu = time.process_time()
        for _ in range(count):
            start = time.perf_counter()
            await cli.publish(req, payload, qos=1)
            await asyncio.wait_for(anext(replies), 10)
            samples.append(time.perf_counter() - start)
        cpu = time.process_time() - cpu
        server.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await server
    return samples, cpu


async def _bus_round_trips(port: int, count: int) -> tuple[list[float], float]:
    """``count`` request / reply round trips through two buses, as :func:`_raw_round_trips`."""
    topic = topics.node_cmd("bench-node", "restart")

    async def on_restart(cmd: RestartCommand, ctx: MessageContext) -> None:
        await ctx.reply(AckReply.to(cmd))

    samples: list[float] = []
    server_cfg = BusConfig(port=port, client_id="bench-server", username="bench-server")
    client_cfg = BusConfig(port=port, client_id="bench-client", username="bench-client")
    async with Bus(server_cfg) as server, Bus(client_cfg) as client:
        server.subscribe(topic, RestartCommand, on_restart)
        await server.wait_connected(timeout=15)
        await client.wait_connected(timeout=15)
        cpu = time.process_time()
        for _ in range(count):
            start = time.perf_counter()
            await client.request(topic, RestartCommand(workload="w"), AckReply, timeout=10)
            samples.append(time.perf_counter() - start)
        cpu = time.process_time() - cpu
    return samples, cpu


async def _burst_rate(port: int, count: int) -> float:
    """Messages a second from a raw QoS 1 publisher through one bus subscription's handler."""
    topic = "fm/v1/data/bench/burst/in"
    done = asyncio.Event()
    seen = 0

    async def on_message(message: RawMessage, ctx: MessageContext) -> None:
        nonlocal seen
        seen += 1
        if seen == count:
            done.set()

    cfg = BusConfig(port=port, client_id="bench-burst", username="bench-burst")
    async with (
        Bus(cfg) as bus,
        aiomqtt.Client(
            "127.0.0.1", port, identifier="bench-pub", username="bench-pub", socket_options=NODELAY
        ) as pub,
    ):
        bus.subscribe(topic, RawMessage, on_message)
        await bus.wait_connected(timeout=15)
        pub.pending_calls_threshold = WINDOW + 1  # the window below is on purpose
        start = time.perf_counter()
        for first in range(0, count, WINDOW):  # at most WINDOW publishes awaiting their PUBACK
            batch = range(first, min(count, first + WINDOW))
            await asyncio.gather(
                *(pub.publish(topic, b"x" * 100, qos=1, timeout=60) for _ in batch)
            )
        await asyncio.wait_for(done.wait(), 120)
        return count / (time.perf_counter() - start)


async def _measure(kind: str, rounds: int, per_round: int, burst: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        broker = BrokerProcess(kind, Path(tmp)).start()
        try:
            await _raw_round_trips(broker.port, 50)  # warm-up
            await _bus_round_trips(broker.port, 50)
            raw: list[float] = []
            bus: list[float] = []
            raw_cpu = bus_cpu = 0.0
            for _ in range(rounds):  # interleaved, so machine noise hits both alike
                samples, cpu = await _raw_round_trips(broker.port, per_round)
                raw, raw_cpu = raw + samples, raw_cpu + cpu
                samples, cpu = await _bus_round_trips(broker.port, per_round)
                bus, bus_cpu = bus + samples, bus_cpu + cpu
            rate = await _burst_rate(broker.port, burst)
        finally:
            broker.stop()
    raw_s, bus_s = summarise(raw), summarise(bus)
    raw_s["cpu_us_per_round_trip"] = round(raw_cpu / len(raw) * 1e6, 1)
    bus_s["cpu_us_per_round_trip"] = round(bus_cpu / len(bus) * 1e6, 1)
    overhead = (bus_s["p50_ms"] - raw_s["p50_ms"]) / raw_s["p50_ms"] * 100
    return {
        "raw": raw_s,
        "bus": bus_s,
        "p50_overhead_percent": round(overhead, 1),
        "qos1_burst_per_s": round(rate),
    }


def _line(kind: str, res: dict[str, object]) -> str:
    raw, bus = res["raw"], res["bus"]
    assert isinstance(raw, dict)
    assert isinstance(bus, dict)
    return (
        f"{kind:9} raw aiomqtt echo p50 {raw['p50_ms']:.3f} ms p99 {raw['p99_ms']:.3f} ms | "
        f"bus request p50 {bus['p50_ms']:.3f} ms p99 {bus['p99_ms']:.3f} ms | "
        f"overhead p50 {res['p50_overhead_percent']}% (goal <= {GOAL_PERCENT}%) | "
        f"CPU per round trip raw {raw['cpu_us_per_round_trip']} us, "
        f"bus {bus['cpu_us_per_round_trip']} us | "
        f"QoS 1 burst {res['qos1_burst_per_s']}/s"
    )


async def _measure_all(rounds: int, per_round: int, burst: int) -> dict[str, object]:
    configure_logging("warning")
    results: dict[str, object] = {}
    for kind in ("amqtt", "mosquitto"):
        results[kind] = await _measure(kind, rounds, per_round, burst)
    return results


async def _main(rounds: int, per_round: int, burst: int) -> None:
    results = await _measure_all(rounds, per_round, burst)
    for kind, res in results.items():
        assert isinstance(res, dict)
        print(_line(kind, res))
    path = write_result(
        "bus",
        {"goal_overhead_percent": GOAL_PERCENT, "load_average": load_average(), "results": results},
    )
    print(f"written {path}")


def _child(args: list[str], baseline: str | None) -> dict[str, object]:
    """One measurement of every broker in a fresh process (on the baseline's code if given)."""
    env = dict(os.environ)
    if baseline is not None:
        src = str(Path(baseline).resolve() / "protocol" / "src")
        env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        subprocess.run(
            [sys.executable, __file__, *args, "--child-out", out.name],
            env=env,
            check=True,
            timeout=1800,
        )
        loaded: dict[str, object] = json.loads(Path(out.name).read_text())
    loaded["load_average"] = load_average()
    return loaded


def _median(values: Iterable[float], digits: int = 1) -> float:
    return round(float(statistics.median(values)), digits)


def _cpu_ratio(res: Any) -> float:
    """Bus CPU per round trip over the raw echo's, of one broker's measurement."""
    return float(res["bus"]["cpu_us_per_round_trip"] / res["raw"]["cpu_us_per_round_trip"])


def _median_pair(runs: list[Any]) -> dict[str, object]:
    """Per broker, the run whose p50 overhead is the median of the runs."""
    chosen: dict[str, object] = {}
    for kind in ("amqtt", "mosquitto"):
        by_overhead = sorted(runs, key=lambda r: float(r[kind]["p50_overhead_percent"]))
        chosen[kind] = by_overhead[(len(by_overhead) - 1) // 2][kind]
    return chosen


def _paired(args: list[str], baseline: str, pairs: int) -> None:
    """Current code and baseline alternated ``pairs`` times; the medians and every run kept."""
    runs: list[dict[str, object]] = []
    for index in range(pairs):
        order = [("current", None), ("baseline", baseline)]
        if index % 2:
            order.reverse()  # neither side always goes first
        pair: dict[str, object] = {}
        for name, tree in order:
            pair[name] = _child(args, tree)
        runs.append(pair)
        for name in ("baseline", "current"):
            res = pair[name]
            assert isinstance(res, dict)
            for kind in ("amqtt", "mosquitto"):
                head = f"pair {index + 1} {name:8} load {res['load_average']} "
                print(head + _line(kind, res[kind]))
    current: list[Any] = [r["current"] for r in runs]
    base: list[Any] = [r["baseline"] for r in runs]
    summary: dict[str, object] = {}
    for kind in ("amqtt", "mosquitto"):
        summary[kind] = {
            "p50_overhead_percent_median": {
                "current": _median(r[kind]["p50_overhead_percent"] for r in current),
                "baseline": _median(r[kind]["p50_overhead_percent"] for r in base),
            },
            "bus_to_raw_cpu_ratio_median": {
                "current": _median((_cpu_ratio(r[kind]) for r in current), 3),
                "baseline": _median((_cpu_ratio(r[kind]) for r in base), 3),
            },
        }
        print(f"{kind:9} medians over {pairs} pairs: {summary[kind]}")
    path = write_result(
        "bus",
        {
            "goal_overhead_percent": GOAL_PERCENT,
            "load_average": load_average(),
            "results": _median_pair(current),
            "baseline": _median_pair(base),
            "baseline_tree": baseline,
            "medians": summary,
            "pairs": runs,
        },
    )
    print(f"written {path}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--per-round", type=int, default=200)
    parser.add_argument("--burst", type=int, default=1000)
    parser.add_argument("--baseline", help="a tree with the code before (see the docstring)")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--child-out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_out:
        measured = asyncio.run(_measure_all(args.rounds, args.per_round, args.burst))
        Path(args.child_out).write_text(json.dumps(measured))
    elif args.baseline:
        child_args = ["--rounds", str(args.rounds), "--per-round", str(args.per_round)]
        _paired([*child_args, "--burst", str(args.burst)], args.baseline, args.pairs)
    else:
        asyncio.run(_main(args.rounds, args.per_round, args.burst))
