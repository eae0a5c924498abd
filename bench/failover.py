"""A link's fallback path and LAN discovery, measured (docs/mesh.md "Paths", "Zero-conf").

Two network namespaces (``tests.support.netns``; only their own addresses are touched) joined
by two veth pairs: the WAN and a "radio" throttled by ``tc tbf`` (256 kbit/s), the same set-up
as ``tests/broker/test_link_paths.py``: the site's link ``cloud`` has paths ``wan`` then
``radio`` (keepalive 2 s, probe every 2 s); ``ctl/#`` may use both, ``bulk/#`` only the WAN.
Each round streams control (20/s) and bulk (300-byte readings, 20/s) from the site, cuts the
WAN silently (netem loss or nftables drops) for ``--cut-s``, heals it, and waits for
everything. Written to ``bench/results/failover.json``:

- ``path_switch_s``: the cut -> the first control message over the radio (the first arrival
  after the silence the cut makes), per round and the median;
- ``switch_back_s``: the heal -> the first bulk message over the WAN again;
- ``messages_lost``: published (acknowledged by the site broker) and never seen at the cloud;
- ``bulk_bytes_on_fallback``: bulk payload bytes that arrived while the WAN was cut (0: none
  crossed the radio);
- ``discovery_s``: an agent started with ``--discover`` (no broker address) -> its ``hello``
  at the announced site broker (one more namespace pair; includes the agent's start-up), and
  ``discovery_look_s``, the browse and choice alone as the agent logs it (``settle_s`` 2 s
  after the first answer).

``python bench/failover.py [--rounds 3] [--cut-s 20]``; needs root and ``ip netns``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import yaml
from _common import REPO, write_result

from tests.broker.test_link_paths import add_radio, path_mesh
from tests.support.mesh_file import PASSWORDS, broker_spec
from tests.support.mqtt import wait_for
from tests.support.netns import NsAgent, NsBroker, NsPair, netns_unavailable, ns_pair

PORT = 1883  # each broker is alone in its namespace
SILENCE_S = 1.0  # no arrival for this long after the cut: the WAN is dead, what follows is radio


class Stamped(list[dict[str, Any]]):
    """The agent's received messages, each stamped with its arrival (monotonic) time."""

    def append(self, item: dict[str, Any]) -> None:
        item["at"] = time.monotonic()
        super().append(item)


async def _agent(pair: NsPair, ns: str, ident: str, *, persistent: bool = False) -> NsAgent:
    made = await NsAgent.start(
        pair, ns, host="127.0.0.1", port=PORT, user="svc", password=PASSWORDS["svc"],
        ident=ident, persistent=persistent,
    )  # fmt: skip
    made.messages = Stamped()
    return made


def _arrivals(sub: NsAgent, prefix: str) -> list[tuple[float, str]]:
    return [(m["at"], m["payload"]) for m in sub.messages if m["topic"].startswith(prefix)]


async def _round(
    pair: NsPair, sub: NsAgent, ctl: NsAgent, bulk: NsAgent, *, rnd: int, cut_s: float
) -> dict[str, Any]:
    n = max(40, int(cut_s * 20) + 60)
    filler = "x" * 300
    ctl_sent = [f"c{rnd}-{i}" for i in range(n)]
    bulk_sent = [f"b{rnd}-{i}-{filler}" for i in range(min(n, 150))]  # one agent line < 64 kB
    streams = [
        asyncio.create_task(ctl.publish(f"ctl/r{rnd}", ctl_sent, gap=0.05)),
        asyncio.create_task(bulk.publish(f"bulk/r{rnd}", bulk_sent, gap=0.05)),
    ]
    await asyncio.sleep(2.0)
    await asyncio.to_thread(pair.cut)  # the event loop keeps stamping arrivals meanwhile
    cut_at = time.monotonic()
    await asyncio.sleep(cut_s)
    await asyncio.to_thread(pair.heal)
    healed_at = time.monotonic()
    await asyncio.gather(*streams)
    want = set(ctl_sent) | set(bulk_sent)
    with contextlib.suppress(AssertionError):  # what never came is counted as lost
        await wait_for(lambda: want <= {m["payload"] for m in sub.messages}, 180, "all")
    got = {m["payload"] for m in sub.messages}
    ctl_times = [t for t, _ in _arrivals(sub, f"ctl/r{rnd}") if t > cut_at]
    resumed = next(
        (b for a, b in zip([cut_at, *ctl_times], ctl_times, strict=False) if b - a >= SILENCE_S),
        None,
    )
    back = next((t for t, _ in _arrivals(sub, f"bulk/r{rnd}") if t > healed_at), None)
    settled = cut_at + SILENCE_S  # WAN arrivals stamped just after the cut are not the radio's
    on_fallback = sum(
        len(p.encode()) for t, p in _arrivals(sub, f"bulk/r{rnd}") if settled < t < healed_at
    )
    return {
        "path_switch_s": None if resumed is None else round(resumed - cut_at, 2),
        "switch_back_s": None if back is None else round(back - healed_at, 2),
        "messages_lost": len(want - got),
        "bulk_bytes_on_fallback": on_fallback,
        "sent": len(want),
    }


async def _failover(rounds: int, cut_s: float, tmp: Path) -> dict[str, Any]:
    with ns_pair() as pair:
        _, radio_cloud = add_radio(pair)
        mesh = path_mesh(tmp, pair, radio_cloud)
        cloud = NsBroker(pair, pair.cloud, mesh, "cloud").start()
        site = NsBroker(pair, pair.site, mesh, "site").start()
        agents: list[NsAgent] = []
        try:
            sub = await _agent(pair, pair.cloud, "cloud-sub", persistent=True)
            agents.append(sub)
            for flt in ("ctl/#", "bulk/#"):
                await sub.subscribe(flt)
            ctl = await _agent(pair, pair.site, "site-ctl")
            bulk = await _agent(pair, pair.site, "site-bulk")
            agents += [ctl, bulk]
            deadline = time.monotonic() + 60
            while not any(m["topic"] == "ctl/warmup" for m in sub.messages):
                if time.monotonic() > deadline:
                    raise RuntimeError("the link never came up:\n" + site.tail())
                await ctl.publish("ctl/warmup", ["w"])
                await asyncio.sleep(0.5)
            out = []
            for rnd in range(rounds):
                res = await _round(pair, sub, ctl, bulk, rnd=rnd, cut_s=cut_s)
                print(f"round {rnd}: {res}", flush=True)
                out.append(res)
                await asyncio.sleep(3.0)  # back on the WAN, queue empty
            return {"rounds": out, "method": pair.cut_method}
        finally:
            for made in agents:
                await made.close()
            site.stop()
            cloud.stop()


async def _discovery(tmp: Path) -> tuple[float, float | None]:
    with ns_pair() as pair:
        spec = broker_spec(
            tmp, "site-a", listeners=[{"name": "default", "host": "0.0.0.0", "port": PORT}],
            announce={"site": "site-a"},
        )  # fmt: skip
        mesh = tmp / "discovery.yaml"
        mesh.write_text(yaml.safe_dump({"brokers": {"site-a": spec}}))
        broker = NsBroker(pair, pair.cloud, mesh, "site-a").start()
        watch = await _agent(pair, pair.cloud, "watch")
        await watch.subscribe("fm/v1/nodes/node-a/hello")
        config = tmp / "agent.yaml"
        config.write_text(
            yaml.safe_dump({"native_isolation": "agent-user", "native_cgroup_parent": None})
        )
        log = (tmp / "agent.log").open("ab")
        started = time.monotonic()
        proc = await asyncio.to_thread(
            subprocess.Popen,
            pair.exec(pair.site, sys.executable, "-m", "fogmesh.agent", "--config", str(config),
                      "--discover", "--node-id", "node-a", "--username", "node-a",
                      "--password", PASSWORDS["node-a"], "--state-dir", str(tmp / "state"),
                      "--runtimes", "native"),
            cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            deadline = started + 120
            while not watch.messages:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        "the agent never connected:\n" + (tmp / "agent.log").read_text()
                    )
                await asyncio.sleep(0.05)
            took = re.search(r"took_s\W+([0-9.]+)", (tmp / "agent.log").read_text())
            look = float(took.group(1)) if took else None
            return round(float(watch.messages[0]["at"]) - started, 2), look
        finally:
            proc.terminate()
            await asyncio.to_thread(proc.wait, 20)
            log.close()
            await watch.close()
            broker.stop()


async def main() -> None:
    parser = argparse.ArgumentParser(prog="python bench/failover.py")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cut-s", type=float, default=20.0)
    opts = parser.parse_args()
    reason = netns_unavailable()
    if reason is not None:
        raise SystemExit(f"failover bench: {reason}")
    with TemporaryDirectory(prefix="fm-failover-") as tmp:
        for sub in ("f", "d"):
            (Path(tmp) / sub).mkdir()
        fail = await _failover(opts.rounds, opts.cut_s, Path(tmp) / "f")
        discovery_s, look_s = await _discovery(Path(tmp) / "d")
    rounds = fail["rounds"]

    def med(key: str) -> float | None:
        vals = [r[key] for r in rounds if r[key] is not None]
        return round(statistics.median(vals), 2) if vals else None

    result = {
        "path_switch_s": med("path_switch_s"),
        "switch_back_s": med("switch_back_s"),
        "messages_lost": sum(r["messages_lost"] for r in rounds),
        "bulk_bytes_on_fallback": sum(r["bulk_bytes_on_fallback"] for r in rounds),
        "discovery_s": discovery_s,
        "discovery_look_s": look_s,
        "messages_sent": sum(r["sent"] for r in rounds),
        "rounds": rounds,
        "setup": {
            "keepalive_s": 2,
            "probe_every_s": 2,
            "radio": "tc tbf 256kbit, path rate 20000 B/s",
            "cut": fail["method"],
            "cut_s": opts.cut_s,
        },
    }
    path = write_result("failover", result)
    for key, value in result.items():
        if key != "rounds":
            print(f"  {key:24} {value}")
    print(f"wrote {path}")


if __name__ == "__main__":
    asyncio.run(main())
