"""The node agent: deploy latency, memory, idle WAN traffic.

* ``deploy``: time from publishing a desired state (one more docker workload) to Docker's
  ``start`` event for its container, against raw aiodocker ``create`` + ``start`` of the same
  image, command and network in the same run, timed the same way (call -> ``start`` event).
  Goal: agent median <= 1.2 x raw median + 15 ms.
* ``rss``: resident memory of the agent process, idle (no workloads) and with 20 running
  workloads; ``rss_idle_mb`` idle for both runtime configurations, each in its own process:
  ``docker`` (the default runtimes, Docker configured; goal <= 40 MB) and ``native`` (only the
  native runtime, ``--runtimes native``; goal <= 32 MB): VmRSS once the agent has converged on
  an empty desired state (``after_start``) and ``FOGMESH_BENCH_IDLE_S`` later (the figure).
  Each is measured twice: started as the shipped unit starts it (the ``Environment=`` settings
  of ``deploy/systemd/fogmesh-agent.service``, e.g. ``MALLOC_ARENA_MAX=1``, and ``--config``
  with an ``agent.yaml`` in JSON syntax, as ``deploy/agent/install.sh`` writes it: the figure)
  and without either, every setting a flag (``without_unit``); both are printed
  and kept.
  With ``--base <tree>`` (or ``FOGMESH_BENCH_BASE``; a work tree of an earlier commit, e.g.
  ``git worktree add /tmp/base HEAD~1``) the same is measured, interleaved, for the agent of
  that tree (its ``protocol/src`` and ``services/node-agent/src`` first on ``PYTHONPATH``):
  ``rss_idle_mb.baseline``; ``--tree <tree>`` measures another tree's agent as "now" (by
  default this checkout's, as installed). ``--repeat N`` starts N agents per configuration and
  tree (the median is the figure); ``--rss-only`` measures ``rss_idle_mb`` alone (no Docker
  deploy, no WAN window) and rewrites only that section of the results.
* ``wan``: bytes the agent sends to the broker (and receives) over an idle window, counted on
  the wire by a TCP proxy between agent and broker (so MQTT framing, keep-alives and PUBACKs
  count), extrapolated to one hour. Default agent settings (heartbeat every 5 s).

Needs dockerd, mosquitto and the busybox test image (built if missing).
Run: ``.venv/bin/python bench/agent.py [--rss-only] [--base TREE] [--tree TREE] [--repeat N]``
(writes ``bench/results/agent.json``; ``--help`` for the options).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiodocker
import psutil

from fogmesh.bus import Bus, BusConfig, MessageContext
from fogmesh.protocol import ActualState, DesiredState, RuntimeKind, WorkloadSpec, topics

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from tests.support.images import BUSYBOX_TAG, build_busybox_image  # noqa: E402

RESULTS = REPO / "bench" / "results" / "agent.json"
TRIALS = 7
MANY = 20
IDLE_WINDOW_S = float(os.environ.get("FOGMESH_BENCH_IDLE_S", "60"))
RUNTIME_CONFIGS = {"docker": [], "native": ["--runtimes", "native"]}  # name -> agent flags
UNIT = Path("deploy/systemd/fogmesh-agent.service")
"""The unit the agent is shipped to run under (its ``Environment=`` lines are measured)."""
STARTS = ("unit", "plain")
"""How each idle agent is started: with the unit's environment, and without it."""
COMMAND = ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class CountingProxy:
    """A TCP relay that counts the bytes each way (the agent's "WAN" link)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.up = 0  # agent -> broker
        self.down = 0  # broker -> agent
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, upward: bool) -> None:
            with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                while data := await src.read(65536):
                    if upward:
                        self.up += len(data)
                    else:
                        self.down += len(data)
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pump(reader, up_writer, True), pump(up_reader, writer, False))

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()


class StartWatcher:
    """Docker ``start`` events of containers carrying our label, with arrival times."""

    def __init__(self, docker: aiodocker.Docker, label: str) -> None:
        self.docker = docker
        self.label = label
        self.started: dict[str, float] = {}
        self.changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        sub = self.docker.events.subscribe(  # type: ignore[no-untyped-call]
            filters={"type": ["container"], "event": ["start"], "label": [self.label]}
        )

        async def loop() -> None:
            while True:
                event = await sub.get()
                if event is None:
                    return
                name = event.get("Actor", {}).get("Attributes", {}).get("name", "")
                self.started[name] = time.perf_counter()
                self.changed.set()

        self._task = asyncio.create_task(loop())
        await asyncio.sleep(0.3)

    async def wait(self, name: str, timeout: float = 60.0) -> float:
        async with asyncio.timeout(timeout):
            while name not in self.started:
                self.changed.clear()
                await self.changed.wait()
        return self.started[name]

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def spec(name: str, tenant: str) -> WorkloadSpec:
    return WorkloadSpec(
        name=name,
        tenant=tenant,
        app="bench",
        component=name,
        runtime=RuntimeKind.DOCKER,
        image=BUSYBOX_TAG,
        command=COMMAND,
    )


async def raw_once(
    docker: aiodocker.Docker, watcher: StartWatcher, key: str, value: str, network: str
) -> float:
    """aiodocker create + start, timed from the create call to the start event."""
    name = f"fmbench-raw-{uuid.uuid4().hex[:8]}"
    config: dict[str, Any] = {
        "Image": BUSYBOX_TAG,
        "Cmd": COMMAND,
        "Labels": {key: value},
        "HostConfig": {"RestartPolicy": {"Name": "no"}, "NetworkMode": network},
    }
    t0 = time.perf_counter()
    container = await docker.containers.create(config, name=name)
    await container.start()
    t1 = await watcher.wait(name)
    return t1 - t0


async def wait_actual(
    box: list[ActualState], generation: int, count: int, timeout: float = 180.0
) -> None:
    async with asyncio.timeout(timeout):
        while True:
            if box:
                a = box[-1]
                if (
                    a.observed_generation == generation
                    and a.state == "converged"
                    and len(a.workloads) == count
                ):
                    return
            await asyncio.sleep(0.1)


def rss_mb(pid: int) -> float:
    return float(psutil.Process(pid).memory_info().rss) / 2**20


def unit_environment(tree: str) -> dict[str, str]:
    """The ``Environment=`` settings of ``tree``'s shipped unit (:data:`UNIT`; "" for this
    checkout), as systemd reads them (space-separated assignments, quotes allowed)."""
    path = Path(tree or REPO) / UNIT
    env: dict[str, str] = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.strip().partition("=")
        if key == "Environment" and sep:
            for item in shlex.split(value):
                name, _, setting = item.partition("=")
                env[name] = setting
    return env


def tree_env(tree: str, start: str = "plain") -> dict[str, str]:
    """The environment that runs the agent of ``tree`` ("" for this checkout, as installed):
    with ``start == "unit"`` the unit's settings added, otherwise those settings left out."""
    unit = unit_environment(tree)
    env = {k: v for k, v in os.environ.items() if k not in unit}
    if start == "unit":
        env.update(unit)
    if tree:
        paths = [str(Path(tree) / sub) for sub in ("protocol/src", "services/node-agent/src")]
        env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


def tree_commit(tree: str) -> str:
    done = subprocess.run(
        ["git", "-C", tree or str(REPO), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip()


def settings_file(work: Path, node: str, port: int) -> Path:
    """An ``agent.yaml`` for ``node`` as ``deploy/agent/install.sh`` writes one (JSON syntax)."""
    path = work / f"agent-{node}.yaml"
    settings = {
        "state_dir": str(work / f"state-{node}"),
        "node_id": node,
        "broker": {"host": "127.0.0.1", "port": port},
        "labels": {"fogmesh.install": "agent"},
    }
    path.write_text(json.dumps(settings, indent=2) + "\n")
    return path


def spawn_agent(
    node: str,
    port: int,
    work: Path,
    label: str,
    *,
    extra: list[str] | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``python -m fogmesh.agent`` for ``node`` on the broker at ``port`` (``extra``
    flags last)."""
    log = (work / f"agent-{node}.log").open("wb")
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fogmesh.agent",
            "--node-id",
            node,
            "--broker-port",
            str(port),
            "--state-dir",
            str(work / f"state-{node}"),
            "--extra-label",
            label,
            "--stop-timeout",
            "2",
            "--log-level",
            "warning",
            *(extra or []),
        ],
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )


async def idle_rss(
    bus: Bus,
    node: str,
    port: int,
    work: Path,
    label: str,
    *,
    config: str,
    tree: str = "",
    start: str = "plain",
) -> dict[str, float]:
    """VmRSS (MB) of a fresh agent of ``tree`` with the runtimes of ``config``, started the
    ``start`` way (:data:`STARTS`), converged on an empty desired state: 2 s after
    (``after_start``) and ``IDLE_WINDOW_S`` after that."""
    actuals: list[ActualState] = []

    async def on_actual(msg: ActualState, _ctx: MessageContext) -> None:
        actuals.append(msg)

    bus.subscribe(topics.node(node, "actual"), ActualState, on_actual)
    env = tree_env(tree, start)
    flags = RUNTIME_CONFIGS[config]
    if start == "unit":
        flags = [*flags, "--config", str(settings_file(work, node, port))]
    agent = spawn_agent(node, port, work, label, extra=flags, env=env)
    try:
        await asyncio.sleep(3)
        desired = topics.node(node, "desired")
        await bus.publish(desired, DesiredState(node=node, generation=0), retain=True)
        await wait_actual(actuals, 0, 0)
        await asyncio.sleep(2)
        after_start = rss_mb(agent.pid)
        await asyncio.sleep(IDLE_WINDOW_S)
        after_idle = rss_mb(agent.pid)
        await bus.publish_raw(desired, b"", retain=True)
        return {"after_start": round(after_start, 1), "after_idle": round(after_idle, 1)}
    finally:
        agent.send_signal(signal.SIGTERM)
        try:
            agent.wait(timeout=20)
        except subprocess.TimeoutExpired:
            agent.kill()


Idle = dict[str, dict[str, dict[str, dict[str, Any]]]]
"""tree ("now", "baseline") -> start (:data:`STARTS`) -> runtime configuration -> figures."""


async def idle_by_config(
    bus: Bus, node: str, port: int, work: Path, label: str, *, trees: dict[str, str], repeat: int
) -> Idle:
    """``idle_rss`` of each tree's agent (``{"now": tree, "baseline": tree}``, "" for this
    checkout) per runtime configuration and way of starting it, ``repeat`` agents each,
    interleaved so that every tree sees the same machine load; the medians with every run."""
    runs: dict[str, dict[str, dict[str, list[dict[str, float]]]]] = {w: {} for w in trees}
    for i in range(repeat):
        for config in RUNTIME_CONFIGS:
            for which, tree in trees.items():
                for start in STARTS:
                    one = await idle_rss(
                        bus,
                        f"{node}{config[0]}{which[0]}{start[0]}{i}",
                        port,
                        work,
                        label,
                        config=config,
                        tree=tree,
                        start=start,
                    )
                    runs[which].setdefault(start, {}).setdefault(config, []).append(one)
    return {
        which: {
            start: {
                config: {
                    "after_start": round(statistics.median(r["after_start"] for r in rs), 1),
                    "after_idle": round(statistics.median(r["after_idle"] for r in rs), 1),
                    "runs": rs,
                }
                for config, rs in by_config.items()
            }
            for start, by_config in by_start.items()
        }
        for which, by_start in runs.items()
    }


def _figures(idle: dict[str, dict[str, dict[str, Any]]], tree: str) -> dict[str, Any]:
    """One tree's idle figures: as its unit starts it (the figure) and without the unit's
    environment and settings file, each configuration's median."""
    return {
        **{config: idle["unit"][config]["after_idle"] for config in RUNTIME_CONFIGS},
        "unit_environment": unit_environment(tree),
        "without_unit": {c: idle["plain"][c]["after_idle"] for c in RUNTIME_CONFIGS},
        "commit": tree_commit(tree),
        "detail": idle,
    }


def rss_idle_section(idle: Idle, trees: dict[str, str], load_start: list[float]) -> dict[str, Any]:
    """The ``rss_idle_mb`` section of the results."""
    section: dict[str, Any] = {
        "goal_mb": {"docker": 40, "native": 32},
        "idle_s": IDLE_WINDOW_S,
        "started_as": f"{UNIT}: its Environment= settings, --config agent.yaml (JSON syntax);"
        " and without them",
        **_figures(idle["now"], trees["now"]),
    }
    if "baseline" in trees:
        section["baseline"] = _figures(idle["baseline"], trees["baseline"])
    section["load_average_start"] = load_start
    section["load_average"] = [round(x, 2) for x in os.getloadavg()]
    return section


def start_mosquitto(work: Path) -> tuple[subprocess.Popen[bytes], int]:
    """A Mosquitto on a free loopback port, anonymous."""
    port = free_port()
    conf = work / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n")
    proc = subprocess.Popen(
        ["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    return proc, port


async def rss_only(trees: dict[str, str], repeat: int) -> dict[str, Any]:
    """``rss_idle_mb`` alone: the idle agents against one Mosquitto."""
    load_start = [round(x, 2) for x in os.getloadavg()]
    run = uuid.uuid4().hex[:8]
    work = Path(tempfile.mkdtemp(prefix="fmbench-"))
    mosq, mport = start_mosquitto(work)
    try:
        await asyncio.sleep(0.5)
        cfg = BusConfig(
            port=mport, client_id=f"bench{run}", username=f"bench{run}", clean_session=True
        )
        async with Bus(cfg) as bus:
            await bus.wait_connected(timeout=20)
            idle = await idle_by_config(
                bus, f"bench-{run}", mport, work, f"fmbench={run}", trees=trees, repeat=repeat
            )
    finally:
        mosq.terminate()
        mosq.wait(timeout=10)
    return rss_idle_section(idle, trees, load_start)


async def main(trees: dict[str, str], repeat: int) -> dict[str, Any]:
    load_start = [round(x, 2) for x in os.getloadavg()]
    build_busybox_image()
    run = uuid.uuid4().hex[:8]
    key, value = "fmbench", run
    label = f"{key}={value}"
    node = f"bench-{run}"
    tenant = f"bt{run}"
    work = Path(tempfile.mkdtemp(prefix="fmbench-"))
    mosq, mport = start_mosquitto(work)
    proxy = CountingProxy(mport)
    await proxy.start()
    docker = aiodocker.Docker()
    watcher = StartWatcher(docker, label)
    await watcher.start()
    agent: subprocess.Popen[bytes] | None = None
    results: dict[str, Any] = {}
    try:
        await asyncio.sleep(0.5)
        agent = spawn_agent(node, proxy.port, work, label)
        cfg = BusConfig(
            port=mport, client_id=f"bench{run}", username=f"bench{run}", clean_session=True
        )
        async with Bus(cfg) as bus:
            await bus.wait_connected(timeout=20)
            actuals: list[ActualState] = []

            async def on_actual(msg: ActualState, _ctx: MessageContext) -> None:
                actuals.append(msg)

            bus.subscribe(topics.node(node, "actual"), ActualState, on_actual)
            desired_topic = topics.node(node, "desired")
            # idle: let it settle, then measure RSS and idle WAN bytes
            await asyncio.sleep(3)
            await bus.publish(desired_topic, DesiredState(node=node, generation=0), retain=True)
            await wait_actual(actuals, 0, 0)
            await asyncio.sleep(2)
            rss_idle = rss_mb(agent.pid)
            up0, down0 = proxy.up, proxy.down
            await asyncio.sleep(IDLE_WINDOW_S)
            idle_up, idle_down = proxy.up - up0, proxy.down - down0
            rss_idle_after = rss_mb(agent.pid)
            # idle RSS per runtime configuration, this tree's agent and the baseline's in turn
            idle = await idle_by_config(bus, node, mport, work, label, trees=trees, repeat=repeat)

            # warm-up: the tenant's network and the image are in place for both paths
            gen = 1
            specs = [spec("warm", tenant)]
            await bus.publish(
                desired_topic, DesiredState(node=node, generation=gen, workloads=specs), retain=True
            )
            await wait_actual(actuals, gen, 1)
            network = f"fm-{tenant}"
            raw: list[float] = []
            agent_times: list[float] = []
            for i in range(TRIALS):  # interleaved, so both see the same machine load
                await asyncio.sleep(0.5)
                raw.append(await raw_once(docker, watcher, key, value, network))
                gen += 1
                specs = [*specs, spec(f"w{i}", tenant)]
                cname = f"fm-{node}-{tenant}-bench-w{i}-0"
                await asyncio.sleep(0.5)
                t0 = time.perf_counter()
                await bus.publish(
                    desired_topic,
                    DesiredState(node=node, generation=gen, workloads=specs),
                    retain=True,
                )
                t1 = await watcher.wait(cname)
                agent_times.append(t1 - t0)
                await wait_actual(actuals, gen, len(specs))

            # up to MANY workloads
            gen += 1
            specs = [*specs, *(spec(f"m{i}", tenant) for i in range(MANY - len(specs)))]
            await bus.publish(
                desired_topic, DesiredState(node=node, generation=gen, workloads=specs), retain=True
            )
            await wait_actual(actuals, gen, MANY)
            await asyncio.sleep(12)  # a few heartbeats with per-workload usage sampling
            rss_many = rss_mb(agent.pid)
            up1, down1 = proxy.up, proxy.down
            window_many = min(IDLE_WINDOW_S, 30.0)
            await asyncio.sleep(window_many)
            many_up, many_down = proxy.up - up1, proxy.down - down1

            # clear
            gen += 1
            await bus.publish(desired_topic, DesiredState(node=node, generation=gen), retain=True)
            await wait_actual(actuals, gen, 0)
            await bus.publish_raw(desired_topic, b"", retain=True)

        raw_med = statistics.median(raw)
        agent_med = statistics.median(agent_times)
        goal = 1.2 * raw_med + 0.015
        per_hour = 3600.0 / IDLE_WINDOW_S
        results = {
            "deploy": {
                "trials": TRIALS,
                "raw_create_start_ms": [round(t * 1000, 1) for t in raw],
                "agent_publish_to_start_ms": [round(t * 1000, 1) for t in agent_times],
                "raw_median_ms": round(raw_med * 1000, 1),
                "agent_median_ms": round(agent_med * 1000, 1),
                "goal_ms": round(goal * 1000, 1),
                "meets_goal": agent_med <= goal,
            },
            "rss": {
                "idle_mb": round(rss_idle, 1),
                "idle_after_window_mb": round(rss_idle_after, 1),
                f"with_{MANY}_workloads_mb": round(rss_many, 1),
                "goal_idle_mb": 40,
                "meets_goal": rss_idle <= 40,
            },
            "rss_idle_mb": rss_idle_section(idle, trees, load_start),
            "wan": {
                "idle_window_s": IDLE_WINDOW_S,
                "heartbeat_interval_s": 5.0,
                "idle_up_bytes": idle_up,
                "idle_down_bytes": idle_down,
                "idle_up_bytes_per_hour": round(idle_up * per_hour),
                "idle_total_bytes_per_hour": round((idle_up + idle_down) * per_hour),
                f"with_{MANY}_workloads_window_s": window_many,
                f"with_{MANY}_workloads_up_bytes_per_hour": round(many_up * 3600 / window_many),
                f"with_{MANY}_workloads_total_bytes_per_hour": round(
                    (many_up + many_down) * 3600 / window_many
                ),
            },
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
        }
    finally:
        if agent is not None and agent.poll() is None:
            agent.send_signal(signal.SIGTERM)
            try:
                agent.wait(timeout=20)
            except subprocess.TimeoutExpired:
                agent.kill()
        await watcher.stop()
        for c in await docker.containers.list(all=True, filters={"label": [label]}):
            with contextlib.suppress(aiodocker.DockerError):
                await c.delete(force=True)
        with contextlib.suppress(aiodocker.DockerError):
            net = await docker.networks.get(f"fm-{tenant}")
            await net.delete()
        await docker.close()
        await proxy.stop()
        mosq.terminate()
        mosq.wait(timeout=10)
    return results


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rss-only", action="store_true", help="measure rss_idle_mb alone")
    p.add_argument(
        "--base",
        default=os.environ.get("FOGMESH_BENCH_BASE", ""),
        help="work tree of the baseline agent (env FOGMESH_BENCH_BASE; none by default)",
    )
    p.add_argument("--tree", default="", help="work tree of the agent measured as now")
    p.add_argument("--repeat", type=int, default=1, help="agents per configuration and tree")
    return p.parse_args()


if __name__ == "__main__":
    args = parse_args()
    trees = {"now": args.tree, **({"baseline": args.base} if args.base else {})}
    if args.rss_only:
        previous = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
        out = {**previous, "rss_idle_mb": asyncio.run(rss_only(trees, args.repeat))}
    else:
        out = asyncio.run(main(trees, args.repeat))
    text = json.dumps(out, indent=2)
    print(text)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text + "\n")
