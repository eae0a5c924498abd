"""What each import of the node agent costs in resident memory (docs/agent.md, "Memory").

A fresh interpreter per run keeps out what the agent's entry point keeps out
(``fogmesh.agent.cli.keep_out_unused_extras``), then imports the agent's dependencies in the
order the agent loads them and reads ``VmRSS`` from ``/proc/self/status`` after each step: each
row is on top of the rows above it. The median of ``RUNS`` runs is printed as a table and
written to ``bench/results/agent_imports.json``. The agent's idle figures (connected, converged,
``FOGMESH_BENCH_IDLE_S`` later) are ``bench/agent.py``'s ``rss_idle_mb``.

Run: ``.venv/bin/python bench/agent_imports.py``.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "agent_imports.json"
RUNS = 5

# the modules of fogmesh.protocol an idle agent has loaded (the package loads each on first use;
# tests/agent/test_imports.py checks that the others below are not)
AGENT_CONTRACT = ["workload", "node", "commands", "lan"]

# (row, modules imported by that step, when the agent needs it)
STEPS: list[tuple[str, list[str], str]] = [
    ("pydantic_core, pydantic", ["pydantic_core", "pydantic", "pydantic.main"], "always"),
    ("hashlib (OpenSSL's libcrypto)", ["hashlib"], "always (ssl, digests)"),
    ("asyncio (with ssl: aiomqtt imports it)", ["asyncio", "ssl"], "always"),
    ("structlog (without rich)", ["structlog"], "always"),
    (
        "pydantic's model machinery (first model class)",
        [
            "pydantic.fields",
            "pydantic.types",
            "pydantic._internal._generate_schema",
            "pydantic.plugin._loader",
        ],
        "always",
    ),
    (
        "the contract's modules the agent uses (deferred)",
        [f"fogmesh.protocol.{m}" for m in AGENT_CONTRACT],
        "always",
    ),
    ("aiomqtt (paho; no socks, urllib.request deferred)", ["aiomqtt"], "always"),
    ("fogmesh.bus, fogmesh.service", ["fogmesh.bus", "fogmesh.service"], "always"),
    ("the agent's modules", ["fogmesh.agent.service", "fogmesh.agent.join"], "always"),
    ("the native runtime", ["fogmesh.agent.runtime.native"], "native configured"),
    (
        "the Docker runtime (its own engine client)",
        ["fogmesh.agent.runtime.docker"],
        "Docker configured",
    ),
    ("the event contract", ["fogmesh.protocol.events"], "the first event (a workload's phase)"),
    ("the migration contract", ["fogmesh.protocol.migration"], "the first migration verb"),
    ("psutil", ["psutil"], "a native workload (its process statistics)"),
    ("tarfile", ["tarfile"], "a snapshot, a container file, an artefact to unpack"),
    (
        "the artefact contract, urllib.request",
        ["fogmesh.protocol.artefacts", "urllib.request"],
        "a ref to fetch or a loaded image",
    ),
    ("bz2, lzma (deferred)", ["bz2", "lzma"], "a compressed archive"),
    (
        "importlib.metadata (deferred)",
        ["importlib.metadata"],
        "pydantic's plugins on (PYDANTIC_DISABLE_PLUGINS empty)",
    ),
    ("yaml", ["yaml"], "only with --config (a YAML file)"),
    ("zeroconf", ["zeroconf"], "only with discovery (--discover)"),
]

CHILD = """
import importlib, json, sys

def rss():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")

out = [rss()]
from fogmesh.agent.cli import keep_out_unused_extras
from fogmesh.agent.deferred import is_deferred, load

keep_out_unused_extras()
out.append(rss())
for step in json.loads(sys.argv[1]):
    for name in step:
        importlib.import_module(name)
        if is_deferred(name):  # a stand-in: its first use loads the module
            load(name)
    out.append(rss())
print(json.dumps(out))
"""


def one_run() -> list[float]:
    steps = json.dumps([mods for _, mods, _ in STEPS])
    done = subprocess.run(
        [sys.executable, "-c", CHILD, steps],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
        cwd=REPO,
    )
    return [float(x) for x in json.loads(done.stdout)]


def main() -> dict[str, object]:
    load_start = [round(x, 2) for x in os.getloadavg()]
    runs = [one_run() for _ in range(RUNS)]
    totals = [statistics.median(col) for col in zip(*runs, strict=True)]
    steps = [("the entry point (fogmesh.agent.cli, argparse)", [], "always"), *STEPS]
    rows = [
        {
            "import": name,
            "modules": mods,
            "needed_when": when,
            "plus_mb": round(totals[i + 1] - totals[i], 1),
            "total_mb": round(totals[i + 1], 1),
        }
        for i, (name, mods, when) in enumerate(steps)
    ]
    print(f"{'import':52s} {'+ MB':>6s} {'total':>6s}  needed when")
    print(f"{'the interpreter':52s} {'':>6s} {totals[0]:6.1f}  always")
    for row in rows:
        print(
            f"{row['import']:52s} {row['plus_mb']:6.1f} {row['total_mb']:6.1f}"
            f"  {row['needed_when']}"
        )
    load = [round(x, 2) for x in os.getloadavg()]
    print(f"load average {load} (at the start {load_start})")
    return {
        "interpreter_mb": round(totals[0], 1),
        "rows": rows,
        "runs": RUNS,
        "python": platform.python_version(),
        "load_average_start": load_start,
        "load_average": load,
    }


if __name__ == "__main__":
    result = main()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
