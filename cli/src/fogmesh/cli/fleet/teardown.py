"""Leave nothing behind: containers and native workload processes of the fleet's nodes.

``fogmesh up`` sweeps once every agent is gone (:meth:`ProcessSet.stop_all` stops the agents
first and waits for them), by the fleet's marks only: the ``fogmesh.fleet`` label on
containers, ``FOGMESH_FLEET`` or the state directory on processes. One sweep is not enough:
dockerd may still finish a create that an agent sent just before its end, and a shim may start
a workload between a scan and its kill. So :func:`remove_leftovers` sweeps again until a
listing made ``settle`` seconds after a clean one is clean too, or ``bound`` seconds pass, and
then logs what is left by id and name."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from pathlib import Path

import psutil
import structlog

__all__ = [
    "SWEEP_BOUND_S",
    "SWEEP_SETTLE_S",
    "fleet_containers",
    "fleet_processes",
    "kill_node_workloads",
    "remove_leftovers",
]

SWEEP_BOUND_S = 30.0
"""How long the teardown keeps sweeping before it gives up and names what is left."""
SWEEP_SETTLE_S = 2.0
"""How long a clean listing must stay clean (dockerd finishing a dead agent's last request)."""
_PAUSE_S = 0.2
log = structlog.get_logger("fogmesh.cli.fleet")


def _listed(fleet_id: str, node: str | None = None) -> dict[str, str] | None:
    """The containers labelled with this fleet's id (and ``node``'s, if given), id -> name;
    empty without a docker command or an engine (nothing can be there to remove), None when
    the engine did not answer in time."""
    if shutil.which("docker") is None:
        return {}
    labels = [f"label=fogmesh.fleet={fleet_id}"]
    if node is not None:
        labels.append(f"label=fogmesh.node={node}")
    argv = ["docker", "ps", "-a", "--no-trunc", "--format", "{{.ID}} {{.Names}}"]
    for label in labels:
        argv += ["--filter", label]
    try:
        listed = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except subprocess.TimeoutExpired:
        return None
    except OSError:
        return {}
    if listed.returncode != 0:  # no engine answers on its socket
        return {}
    found: dict[str, str] = {}
    for line in listed.stdout.splitlines():
        cid, _, name = line.strip().partition(" ")
        if cid:
            found[cid[:12]] = name
    return found


def fleet_containers(fleet_id: str, node: str | None = None) -> list[str]:
    """Ids of the containers labelled with this fleet's id (and ``node``'s, if given)."""
    return list(_listed(fleet_id, node) or {})


def _is_within(path: str, root: Path) -> bool:
    return bool(path) and Path(path).is_absolute() and Path(path).is_relative_to(root)


def _maybe_ours(fleet_id: str, mine: Path) -> list[int]:
    """Pids that may be the fleet's, read cheaply from ``/proc`` (a busy machine has
    thousands of processes, and psutil's reads of each cost ~1 ms): the fleet's id in the
    environment, or ``mine`` in the working directory or the command line. Without ``/proc``,
    every pid."""
    proc_root = Path("/proc")
    if not proc_root.is_dir():
        return [int(pid) for pid in psutil.pids()]
    marker = f"\0FOGMESH_FLEET={fleet_id}\0".encode()
    inside = str(mine).encode()
    pids: list[int] = []
    for entry in os.scandir(proc_root):
        if not entry.name.isdigit():
            continue
        here = Path(entry.path)
        with contextlib.suppress(OSError):
            if inside in str((here / "cwd").readlink()).encode():
                pids.append(int(entry.name))
                continue
        with contextlib.suppress(OSError):
            environ = b"\0" + (here / "environ").read_bytes() + b"\0"
            if marker in environ or inside in (here / "cmdline").read_bytes():
                pids.append(int(entry.name))
    return pids


def fleet_processes(
    fleet_id: str, state_dir: Path, node: str | None = None
) -> list[psutil.Process]:
    """What this fleet started: processes carrying its id in their environment, or running
    from inside its state directory (workloads, shims). With ``node``: only that node's
    workloads and shims (its ``FOGMESH_NODE``, or its agent's state directory in the working
    directory or the command line), never the agent itself or this process's ancestors.
    Zombies are left out: they are dead already, and only their parent (or init) reaps them."""
    root = state_dir.resolve()
    mine = root / "agents" / node if node is not None else root
    me = psutil.Process()
    spared = {me.pid, *(p.pid for p in me.parents())}
    found: list[psutil.Process] = []
    for pid in _maybe_ours(fleet_id, mine):
        if pid in spared:
            continue
        with contextlib.suppress(psutil.Error):
            proc = psutil.Process(pid)
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            cwd = proc.cwd()
            env = proc.environ()
            marked = env.get("FOGMESH_FLEET") == fleet_id
            if node is None:
                if marked or _is_within(cwd, root):
                    found.append(proc)
                continue
            named = marked and env.get("FOGMESH_NODE") == node
            args = proc.cmdline()
            if named or _is_within(cwd, mine) or any(_is_within(a, mine) for a in args):
                found.append(proc)
    return found


def _living(proc: psutil.Process) -> bool:
    try:
        return bool(proc.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def _kill(victims: list[psutil.Process], timeout: float = 5.0) -> int:
    """SIGKILL ``victims`` and wait until each is gone (reaped if it is a child of this
    process) or a zombie that another parent has yet to reap."""
    for proc in victims:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    deadline = time.monotonic() + timeout
    waiting = victims
    while waiting and time.monotonic() < deadline:
        _, alive = psutil.wait_procs(waiting, timeout=0.2)
        waiting = [p for p in alive if _living(p)]
    return len(victims)


def kill_node_workloads(fleet_id: str, state_dir: Path, node: str) -> dict[str, int]:
    """SIGKILL ``node``'s workloads as a power cut would: its native workloads and shims, and
    its containers (``docker kill``, left in place for the agent to find); counts by kind."""
    ids = fleet_containers(fleet_id, node)
    if ids:
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            subprocess.run(["docker", "kill", *ids], capture_output=True, timeout=60, check=False)
    return {"containers": len(ids), "processes": _kill(fleet_processes(fleet_id, state_dir, node))}


def _remove_containers(ids: list[str]) -> None:
    with contextlib.suppress(OSError, subprocess.TimeoutExpired):
        subprocess.run(
            ["docker", "rm", "-f", "-v", *ids], capture_output=True, timeout=120, check=False
        )


def _describe(proc: psutil.Process) -> str:
    with contextlib.suppress(psutil.Error):
        return f"{proc.pid} {' '.join(proc.cmdline())[:120]}"
    return str(proc.pid)


def remove_leftovers(
    fleet_id: str,
    state_dir: Path,
    *,
    bound: float = SWEEP_BOUND_S,
    settle: float = SWEEP_SETTLE_S,
) -> dict[str, int]:
    """Remove the containers and kill the processes the fleet's agents left, once the agents
    are gone: sweep until a listing ``settle`` seconds after a clean one is clean too, or
    ``bound`` seconds pass (then log what is left). Counts of what was removed, by kind."""
    removed: set[str] = set()
    killed: set[int] = set()
    deadline = time.monotonic() + bound
    clean_at: float | None = None
    while True:
        containers = _listed(fleet_id)
        procs = fleet_processes(fleet_id, state_dir)
        now = time.monotonic()
        if containers == {} and not procs:
            clean_at = now if clean_at is None else clean_at
            if now - clean_at >= settle or now >= deadline:
                break
            time.sleep(min(settle - (now - clean_at), deadline - now))
            continue
        clean_at = None
        if now >= deadline:
            log.warning(
                "the fleet's teardown left these behind",
                fleet=fleet_id,
                bound_s=bound,
                containers=(
                    "docker did not answer"
                    if containers is None
                    else [f"{cid} {name}" for cid, name in containers.items()]
                ),
                processes=[_describe(p) for p in procs],
            )
            break
        if containers:
            _remove_containers(list(containers))
            removed.update(containers)
        if procs:
            _kill(procs)
            killed.update(p.pid for p in procs)
        time.sleep(_PAUSE_S)
    return {"containers": len(removed), "processes": len(killed)}
