"""Apps over the mesh, measured: push once to the cloud, deploy on three nodes behind one WAN.

Two network namespaces (``tests.support.netns``; only their own addresses are touched) joined by
one veth shaped with ``tc tbf`` at the paper's figures: 24.2 Mbit/s down (cloud -> site) and
11.45 Mbit/s up. The cloud holds its broker and the artefact store; the site its broker (with
the WAN link: ``fm/v1/api/#`` up only, the node, reply, ops and event trees both ways), the
site's artefact cache and three native node agents. For each size (4 KB, 1 MB, 15 MB, 100 MB by
default) a ``.tar`` app of that size is pushed to the store from the cloud, then given to the
three nodes at once (their desired states, as the scheduler writes them); the clock runs from the
desired states' publishing until all three report the app running. Written to
``bench/results/artefacts.json`` per size:

- ``seconds`` (deploy on three nodes), ``theoretical_seconds`` (size x 8 / 24.2 Mbit/s, the
  paper's own yardstick: one crossing of the WAN), ``overhead`` (seconds / theoretical - 1; the
  paper measured 50% under 1 MB and 10% above);
- ``wan_bytes`` (IP bytes the cloud sent down the veth during the deploy), ``wan_bytes_up``,
  ``file_bytes`` and ``wan_per_file_byte`` (the goal: <= 1.05 for three nodes of one site);
- ``push_seconds`` (the push to the store, inside the cloud: no WAN).

``python bench/artefacts.py [--sizes 4096,1048576,15728640,104857600]``; needs root and
``ip netns``. The driver runs inside the cloud namespace (``driver`` role below).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from _common import REPO, write_result
from ns_mesh import ns_mesh
from ns_processes import NsProcesses

from tests.support.netns import NsPair, netns_unavailable, ns_pair

BIN = Path(sys.executable).parent
CLOUD_PORT, WAN_PORT, SITE_PORT = 22883, 22884, 22885
DOWN_MBIT, UP_MBIT = 24.2, 11.45
SITE = "site-a"
TENANT = "bench"
NODES = ("edge-1", "edge-2", "edge-3")
PASSWORD = os.environ.setdefault("FM_ARTEFACTS_BENCH_PW", secrets.token_hex(8))
SIZES = (4096, 1 << 20, 15 << 20, 100 << 20)


# -- inside the cloud namespace: push, deploy, time -------------------------------------------


def _tx(dev: str) -> int:
    return int(Path(f"/sys/class/net/{dev}/statistics/tx_bytes").read_text())


def _rx(dev: str) -> int:
    return int(Path(f"/sys/class/net/{dev}/statistics/rx_bytes").read_text())


def _fetched_at(root: Path, ref: str) -> float:
    """When the last node had ``ref`` in hand (unix time, from the agents' logs)."""
    stamps = [
        datetime.fromisoformat(json.loads(line)["timestamp"]).timestamp()
        for node in NODES
        for line in (root / f"{node}.log").read_text(errors="replace").splitlines()
        if ref in line and '"artefact fetched"' in line
    ]
    return max(stamps, default=0.0)


async def _drive(opts: argparse.Namespace) -> list[dict[str, Any]]:
    from fogmesh.bus import Bus, BusConfig, MessageContext
    from fogmesh.cli.artefacts import Pusher
    from fogmesh.protocol import ActualState, WorkloadPhase, topics
    from fogmesh.protocol.artefacts import ArtefactKind
    from tests.artefacts.conftest import app_tar

    config = BusConfig(
        host="127.0.0.1", port=CLOUD_PORT, client_id="svc-driver", username="svc",
        password=PASSWORD, keepalive=10,
    )  # fmt: skip
    running: dict[str, set[str]] = {n: set() for n in NODES}
    changed = asyncio.Event()

    async def on_actual(msg: ActualState, _ctx: MessageContext) -> None:
        running[msg.node] = {w.name for w in msg.workloads if w.phase is WorkloadPhase.RUNNING}
        changed.set()

    results = []
    deployed: list[dict[str, Any]] = []
    async with Bus(config) as bus:
        bus.subscribe(topics.node_filter("actual"), ActualState, on_actual)
        await bus.wait_connected(timeout=60)
        for n, size in enumerate(int(s) for s in opts.sizes.split(",")):
            path = Path(opts.root) / f"app-{size}.tar"
            payload = max(0, size - 3 * 512 - 1024)  # tar headers and run.sh take the rest
            path.write_bytes(app_tar(payload))
            started = time.monotonic()
            status = await Pusher(bus, TENANT, path, kind=ArtefactKind.APP, timeout=60).run()
            push_s = time.monotonic() - started
            name = f"app{n}-main-0"
            down, up = _tx(opts.dev), _rx(opts.dev)
            # the apps deployed before stay: the clock holds no stop of an older one
            deployed.append(
                {
                    "name": name, "tenant": TENANT, "app": f"app{n}", "component": "main",
                    "runtime": "native", "command": ["sh", "run.sh"],
                    "artefact": {"ref": status.ref, "command_script": "run.sh"},
                }
            )  # fmt: skip
            started, wall = time.monotonic(), time.time()
            for node in NODES:
                desired = {"node": node, "generation": n + 1, "workloads": deployed}
                await bus.publish_raw(
                    topics.node(node, "desired"), json.dumps(desired).encode(), retain=True
                )
            async with asyncio.timeout(opts.deploy_timeout):
                while not all(name in running[node] for node in NODES):
                    changed.clear()
                    await changed.wait()
            seconds = time.monotonic() - started
            file_bytes = path.stat().st_size
            wan_down, wan_up = _tx(opts.dev) - down, _rx(opts.dev) - up
            theoretical = file_bytes * 8 / (DOWN_MBIT * 1e6)
            fetched = _fetched_at(Path(opts.root), status.ref) - wall
            results.append(
                {
                    "file_bytes": file_bytes,
                    "push_seconds": round(push_s, 3),
                    "seconds": round(seconds, 3),
                    "theoretical_seconds": round(theoretical, 3),
                    "overhead": round(seconds / theoretical - 1, 3),
                    "fetch_seconds": round(fetched, 3),
                    "fetch_overhead": round(fetched / theoretical - 1, 3),
                    "wan_bytes": wan_down,
                    "wan_bytes_up": wan_up,
                    "wan_per_file_byte": round(wan_down / file_bytes, 4),
                }
            )
            print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    return results


# -- the outside: namespaces, shaping, processes ----------------------------------------------


def _mesh(root: Path, pair: NsPair) -> Path:
    # API requests go up to the cloud's services, never down: a push's chunks stay off the WAN
    # (with fm/v1/# both ways they would cross it too)
    rules = [
        {"pattern": "fm/v1/api/#", "direction": "out", "qos": 1},
        *({"pattern": f"fm/v1/{tree}/#", "direction": "both", "qos": 1}
          for tree in ("nodes", "reply", "ops", "events")),
    ]  # fmt: skip
    return ns_mesh(root, pair, site=SITE, ports=(CLOUD_PORT, WAN_PORT, SITE_PORT),
                   password=PASSWORD, rules=rules, nodes=NODES, keepalive=10)  # fmt: skip


def _shape(pair: NsPair) -> str:
    """tbf on each end's egress: the cloud's is the site's downlink."""
    for ns, dev, mbit in (
        (pair.cloud, pair.cloud_dev, DOWN_MBIT),
        (pair.site, pair.site_dev, UP_MBIT),
    ):
        subprocess.run(
            pair.exec(ns, "tc", "qdisc", "replace", "dev", dev, "root", "tbf", "rate",
                      f"{mbit}mbit", "burst", "32kb", "latency", "400ms"),
            check=True, capture_output=True, timeout=30,
        )  # fmt: skip
    return f"tc tbf {DOWN_MBIT} Mbit/s down, {UP_MBIT} Mbit/s up (burst 32 kB)"


def bench(opts: argparse.Namespace) -> dict[str, Any]:
    reason = netns_unavailable()
    if reason is not None:
        raise SystemExit(f"bench/artefacts.py: {reason}")
    root = Path(tempfile.mkdtemp(prefix="fm-artefacts-bench-"))
    svc = ["--broker-username", "svc", "--broker-password", PASSWORD]
    with ns_pair() as pair:
        run = NsProcesses(root, pair)
        try:
            shaping = _shape(pair)
            mesh = _mesh(root, pair)
            for name, ns in (("cloud", pair.cloud), (SITE, pair.site)):
                run.start(name, ns, str(BIN / "fogmesh-broker"), "run", "--mesh", str(mesh),
                          "--broker", name, ready=f"ready {name}")  # fmt: skip
            run.start("store", pair.cloud, str(BIN / "fogmesh-artefacts"), "store",
                      "--data-dir", str(root / "store"), "--broker-port", str(CLOUD_PORT),
                      "--client-id", "svc-store", *svc, ready="artefact store serving")  # fmt: skip
            run.start("cache", pair.site, str(BIN / "fogmesh-artefacts"), "cache", "--site", SITE,
                      "--data-dir", str(root / "cache"), "--http-host", "127.0.0.1",
                      "--http-port", "0", "--broker-port", str(SITE_PORT),
                      "--client-id", "svc-cache", *svc, ready="artefact cache serving")  # fmt: skip
            for node in NODES:
                config = root / f"{node}.yaml"
                broker = {"port": SITE_PORT, "username": node, "password": PASSWORD}
                config.write_text(yaml.safe_dump({"site": SITE, "broker": broker}))
                run.start(node, pair.site, str(BIN / "fogmesh-agent"), "--config", str(config),
                          "--node-id", node, "--state-dir", str(root / node),
                          "--runtimes", "native", "--reconcile-interval", "1")  # fmt: skip
            out = root / "results.json"
            driver = [sys.executable, str(Path(__file__).resolve()), "driver", "--root", str(root),
                      "--out", str(out), "--dev", pair.cloud_dev, "--sizes", opts.sizes,
                      "--deploy-timeout", str(opts.deploy_timeout)]  # fmt: skip
            subprocess.run(pair.exec(pair.cloud, *driver), cwd=REPO, check=True, timeout=3600)
            figures = json.loads(out.read_text())
        finally:
            run.stop()
    return {
        "setup": "cloud broker + store | tbf WAN | site broker + cache + 3 native agents",
        "shaping": shaping,
        "down_mbit": DOWN_MBIT,
        "up_mbit": UP_MBIT,
        "nodes": len(NODES),
        "sizes": figures,
        "notes": "seconds: desired states published at the cloud until all three nodes report "
        "the app running (the WAN once, the site's LAN three times, unpack and start); "
        "wan_bytes: IP bytes the cloud's veth sent meanwhile (heartbeats included)",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("role", nargs="?", default="bench", choices=["bench", "driver"])
    parser.add_argument("--sizes", default=",".join(str(s) for s in SIZES))
    parser.add_argument("--deploy-timeout", type=float, default=600.0)
    parser.add_argument("--root", default="")
    parser.add_argument("--out", default="")
    parser.add_argument("--dev", default="")
    opts = parser.parse_args()
    if opts.role == "driver":
        Path(opts.out).write_text(json.dumps(asyncio.run(_drive(opts))))
        return
    result = bench(opts)
    path = write_result("artefacts", result)
    for row in result["sizes"]:
        print(
            f"{row['file_bytes']:>10} B  {row['seconds']:7.2f} s  (theory "
            f"{row['theoretical_seconds']:6.2f} s, overhead {row['overhead']:+.1%})  "
            f"WAN {row['wan_per_file_byte']:.3f} x file"
        )
    print(f"written to {path}")


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
