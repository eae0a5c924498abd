"""An agent with no broker address finds its site broker by mDNS, joins it and runs a workload.

Two network namespaces of the test's own (``tests.support.netns``): the "site" one holds the
site broker ``site-a`` (a TLS listener on the veth, announced with ``announce:``, and a plain
one on loopback for the test's own clients) and a rogue that announces itself as site-a with
site-a's fingerprint but presents a certificate of its own (``tests.agent.rogue_broker``); the
"node" one holds the agent, started with only a join token, the fleet CA and the trusted
fingerprint. Multicast crosses the veth between them, nothing else is configured.

The agent must pick site-a, pass the rogue over (and say why), redeem its token, report its
heartbeat and run a native workload given to it. A unit test covers the choice among plain
announcements (no TLS): the trusted site first.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from fogmesh.agent.discovery import Candidate, DiscoveryFailed, DiscoverySettings, choose
from fogmesh.broker.announce import cert_fingerprint
from fogmesh.broker.certs import issue_cert, load_or_make_ca
from tests.agent.helpers import desired, native_workload
from tests.support.brokers import REPO
from tests.support.mesh_file import PASSWORDS, broker_spec
from tests.support.mqtt import wait_for
from tests.support.netns import NsAgent, NsPair

NODE = "edge-d"
SCRIPT = "#!/bin/sh\ntrap 'exit 0' TERM\nwhile true; do sleep 1; done\n"


def test_the_trusted_site_is_preferred_among_plain_announcements() -> None:
    def cand(site: str) -> Candidate:
        return Candidate(f"{site}-b", ["10.0.0.1"], 1883, site, "b", tls=False, announced_fp=None)

    found = [cand("site-a"), cand("site-b"), cand("site-c")]
    choice = choose(found, DiscoverySettings(site="site-b"), tls_on=False, cafile=None)
    assert choice.chosen.site == "site-b"
    assert "trusted" in choice.reason
    # once TLS is on, a plain announcement cannot be verified: none is usable
    with pytest.raises(DiscoveryFailed, match="cannot be verified"):
        choose([cand("site-a")], DiscoverySettings(), tls_on=True, cafile=None)


def _started(proc: subprocess.Popen[bytes], log: Path, marker: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while marker not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{log.name} did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.05)


@pytest.mark.netns
async def test_an_agent_finds_its_site_broker_and_ignores_a_rogue(
    tmp_path: Path, pair: NsPair
) -> None:
    site_ns, node_ns = pair.cloud, pair.site  # the broker side, the node side
    addr = pair.cloud_addr
    ca = load_or_make_ca(tmp_path / "pki")
    cert = issue_cert(ca, tmp_path / "pki", "site-a", [addr])
    rogue_ca = load_or_make_ca(tmp_path / "rogue")
    rogue = issue_cert(rogue_ca, tmp_path / "rogue", "rogue", [addr])
    trusted = cert_fingerprint(cert.cert)
    spec = broker_spec(
        tmp_path,
        "site-a",
        listeners=[
            {"name": "default", "host": "127.0.0.1", "port": 1883},
            {
                "name": "tls",
                "host": addr,
                "port": 8883,
                "tls": {"certfile": str(cert.cert), "keyfile": str(cert.key)},
            },
        ],
        announce={"site": "site-a"},
    )
    mesh = tmp_path / "mesh.yaml"
    mesh.write_text(yaml.safe_dump({"brokers": {"site-a": spec}}))
    procs: list[subprocess.Popen[bytes]] = []
    logs = {name: tmp_path / f"{name}.log" for name in ("broker", "rogue", "agent")}

    def start(name: str, ns: str, *argv: str, env: dict[str, str] | None = None) -> None:
        cmd = pair.exec(ns, sys.executable, *argv)
        with logs[name].open("ab") as out:
            proc = subprocess.Popen(
                cmd,
                cwd=REPO,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
            )
        procs.append(proc)

    watch: NsAgent | None = None
    try:
        start("broker", site_ns, "-m", "fogmesh.broker", "--log-level", "INFO", "run",
              "--mesh", str(mesh), "--broker", "site-a")  # fmt: skip
        _started(procs[-1], logs["broker"], "announcing")
        start("rogue", site_ns, "-m", "tests.agent.rogue_broker", "--host", addr, "--port",
              "8884", "--cert", str(rogue.cert), "--key", str(rogue.key), "--fingerprint",
              trusted, "--site", "site-a")  # fmt: skip
        _started(procs[-1], logs["rogue"], "ready")
        token = subprocess.run(
            pair.exec(site_ns, sys.executable, "-m", "fogmesh.cli", "--timeout", "30",
                      "node", "token", "--node", NODE),
            cwd=REPO, capture_output=True, text=True, timeout=120, check=True,
            env={**os.environ, "FOGMESH_BROKER": "127.0.0.1:1883", "FOGMESH_USERNAME": "svc",
                 "FOGMESH_PASSWORD": PASSWORDS["svc"]},
        ).stdout.strip()  # fmt: skip
        watch = await NsAgent.start(
            pair, site_ns, host="127.0.0.1", port=1883, user="svc",
            password=PASSWORDS["svc"], ident="site-watch",
        )  # fmt: skip
        await watch.subscribe(f"fm/v1/nodes/{NODE}/#")

        script = tmp_path / "app.sh"
        script.write_text(SCRIPT)
        config = tmp_path / "agent.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "native_isolation": "agent-user",
                    "native_cgroup_parent": None,
                    "broker": {"tls": True, "ca_file": str(ca.cert)},
                    "discovery": {"enabled": True, "fingerprint": trusted, "timeout_s": 30},
                }
            )
        )
        start("agent", node_ns, "-m", "fogmesh.agent", "--config", str(config),
              "--state-dir", str(tmp_path / "state"), "--runtimes", "native",
              "--heartbeat", "1", "--reconcile-interval", "1", "--join-token", token)  # fmt: skip
        await wait_for(
            lambda: bool(watch and watch.payloads(f"fm/v1/nodes/{NODE}/heartbeat")),
            90,
            "a heartbeat of the agent that found its broker",
        )
        text = logs["agent"].read_text(errors="replace")
        chose = next(line for line in text.splitlines() if "discovery.chose" in line)
        assert "site-a-site-a" in chose, chose
        assert "trusted fingerprint" in chose, chose
        passed = [line for line in text.splitlines() if "discovery.passed_over" in line]
        assert any("site-a-rogue" in line and "presents" in line for line in passed), passed
        print(chose)
        print(*passed, sep="\n")

        workload = native_workload("job", "acme", str(script))
        await watch.publish(
            f"fm/v1/nodes/{NODE}/desired", [desired(NODE, 1, workload)], retain=True
        )

        def running() -> bool:
            assert watch is not None
            for raw in watch.payloads(f"fm/v1/nodes/{NODE}/actual"):
                for w in json.loads(raw).get("workloads", []):
                    if w["name"] == "job" and w["phase"] == "running":
                        return True
            return False

        await wait_for(running, 60, "the workload running on the discovered broker's node")
    except BaseException:
        for name, log in logs.items():
            if log.exists():
                print(f"---- {name} log ----\n{log.read_text(errors='replace')[-4000:]}")
        raise
    finally:
        if watch is not None:
            await watch.close()
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    await asyncio.to_thread(proc.wait, 20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
