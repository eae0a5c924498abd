"""The partition test's eyes and hands inside the cloud's namespace, over the real bus.

A test in the root namespace cannot reach a broker inside one, so it runs
``ip netns exec NS python -m tests.partition.probe ...`` and reads one JSON document from its
stdout: ``look`` gives the registry's nodes and the tenant's workloads and the scheduler's
placements of one app; ``deploy`` deploys a manifest (JSON file) and prints its placements;
``scale`` sets one component's replicas and prints the placements; ``serve`` answers ``look``
and ``scale`` commands read from stdin over one connection.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from fogmesh.bus import Bus, BusConfig
from fogmesh.protocol import RemoteError, RequestTimeout, topics
from fogmesh.protocol.apps import AppReply, DeployApp, GetApp, ScaleApp
from fogmesh.protocol.manifest import AppManifest
from fogmesh.protocol.queries import ListNodes, NodeListReply

__all__ = ["main"]


async def _look(bus: Bus, tenant: str, app: str) -> dict[str, Any]:
    nodes = await bus.request(
        topics.api(tenant, "nodes", "list"), ListNodes(limit=500), NodeListReply, timeout=15
    )
    seen: dict[str, Any] = {"nodes": {n.node: n.state for n in nodes.nodes}}
    try:
        placed = await bus.request(
            topics.api(tenant, "apps", "get"), GetApp(app=app), AppReply, timeout=15
        )
    except RemoteError:  # not deployed yet
        return seen
    seen["placements"] = {p.workload: p.node for p in placed.app.placements if not p.retiring}
    return seen


async def _deploy(bus: Bus, tenant: str, manifest: AppManifest) -> dict[str, Any]:
    last: Exception | None = None
    for _ in range(30):  # the scheduler may still be taking its lease or learning the nodes
        try:
            reply = await bus.request(
                topics.api(tenant, "apps", "deploy"),
                DeployApp(manifest=manifest),
                AppReply,
                timeout=15,
            )
            return {"placements": {p.workload: p.node for p in reply.app.placements}}
        except (RemoteError, RequestTimeout) as exc:
            last = exc
            await asyncio.sleep(2.0)
    return {"error": str(last)}


async def _one(bus: Bus, opts: argparse.Namespace) -> dict[str, Any]:
    if opts.cmd == "scale":
        scale = ScaleApp(app=opts.app, component=opts.component, replicas=opts.replicas)
        reply = await bus.request(
            topics.api(opts.tenant, "apps", "scale"), scale, AppReply, timeout=15
        )
        return {"placements": {p.workload: p.node for p in reply.app.placements
                               if not p.retiring}}  # fmt: skip
    if opts.cmd == "deploy":
        manifest = AppManifest.model_validate_json(Path(opts.manifest).read_text())
        return await _deploy(bus, opts.tenant, manifest)
    return await _look(bus, opts.tenant, opts.app)


async def _serve(bus: Bus, opts: argparse.Namespace) -> None:
    """One command per stdin line (``look``, ``scale COMPONENT REPLICAS``), one JSON line
    out each, over one connection (a process per look is seconds on a loaded machine)."""
    loop = asyncio.get_running_loop()
    while line := await loop.run_in_executor(None, sys.stdin.readline):
        words = line.split()
        if not words:
            continue
        opts.cmd = words[0]
        if opts.cmd == "scale":
            opts.component, opts.replicas = words[1], int(words[2])
        try:
            result = await _one(bus, opts)
        except Exception as exc:  # the test sees it and asks again
            result = {"error": f"{type(exc).__name__}: {exc}"}
        sys.stdout.write(json.dumps(result) + "\n")
        sys.stdout.flush()


async def _main(opts: argparse.Namespace) -> dict[str, Any]:
    config = BusConfig(
        port=opts.port,
        client_id=f"probe-{os.getpid()}",
        username=opts.user,
        password=os.environ["PROBE_PASSWORD"],
        timeout=15,
    )
    async with Bus(config) as bus:
        await bus.wait_connected()
        if opts.cmd == "serve":
            await _serve(bus, opts)
            return {"served": True}
        return await _one(bus, opts)


def main() -> None:
    """Parse the command line, run one command, print its JSON result."""
    parser = argparse.ArgumentParser(prog="python -m tests.partition.probe")
    parser.add_argument("cmd", choices=["look", "deploy", "scale", "serve"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--tenant", required=True)
    parser.add_argument("--app", default="")
    parser.add_argument("--manifest", default="")
    parser.add_argument("--component", default="")
    parser.add_argument("--replicas", type=int, default=1)
    opts = parser.parse_args()
    try:
        result = asyncio.run(_main(opts))
    except Exception as exc:  # the test sees it and polls again
        result = {"error": f"{type(exc).__name__}: {exc}"}
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
