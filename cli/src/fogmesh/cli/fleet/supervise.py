"""Who may die in a ``fogmesh up`` fleet, and how a user kills and revives a node.

An agent that dies is a node lost: the fleet reports it and carries on (the registry marks the
node lost, the scheduler re-places its workloads). The brokers, the registry, the scheduler and
the migrator are the fleet itself: when one of them exits, ``fogmesh up`` stops, naming it and
showing the last lines of its log (they are not restarted: a fleet that quietly lost its
control plane would show a failover that did not happen).
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

from fogmesh.cli.errors import CliError
from fogmesh.cli.fleet.processes import ChildProcess, ProcessSet
from fogmesh.cli.fleet.teardown import kill_node_workloads

__all__ = ["NodeSupervisor", "log_tail"]


def log_tail(path: Path, lines: int = 15) -> str:
    """The last ``lines`` of a log file ("(no log)" when it cannot be read)."""
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return "(no log)"


class NodeSupervisor:
    """Watches the fleet's children; kills and revives nodes on request.

    ``note`` receives one line for each thing a user should see happen (the live view shows
    it, the fleet's log keeps it). ``agents`` maps a node to what its agent process is doing
    now (running, killed, stopped, or how it exited), for the live view.
    """

    def __init__(
        self, procs: ProcessSet, fleet_id: str, state_dir: Path, note: Callable[[str], None]
    ) -> None:
        self.procs, self.fleet_id, self.state_dir = procs, fleet_id, state_dir
        self.note = note
        self.agents: dict[str, str] = {}
        self._reported: set[int] = set()  # pids whose exit was told already
        self._stopped: set[str] = set()  # nodes whose agent is SIGSTOPped

    def check(self) -> None:
        """Report agents that died; raise :class:`CliError` when a core process did."""
        for child in self.procs.dead():
            if child.node is None:
                raise CliError(
                    f"{child.name} exited ({child.exit_reason}); the fleet cannot run without "
                    f"it. Last lines of {child.log}:\n{log_tail(child.log)}"
                )
            pid = child.proc.pid if child.proc is not None else -1
            if pid in self._reported:
                continue
            self._reported.add(pid)
            self.agents[child.node] = child.exit_reason
            self.note(
                f"{child.name} exited ({child.exit_reason}): node {child.node} is lost, the "
                f"fleet carries on (`fogmesh fleet revive {child.node}` starts it again)"
            )
        for child in self.procs.children:
            if child.node is not None and child.alive:
                self.agents[child.node] = "stopped" if child.node in self._stopped else "running"

    def _agent(self, node: str) -> ChildProcess:
        child = self.procs.agent(node)
        if child is None:
            known = ", ".join(c.node for c in self.procs.children if c.node) or "none"
            raise CliError(f"the fleet has no node {node} (its nodes: {known})", code=2)
        return child

    def kill(self, node: str, *, silent: bool = False) -> str:
        """Kill ``node``: SIGKILL of every workload it runs and of its agent (its last will
        fires), or with ``silent`` SIGSTOP of its agent alone (its heartbeats stop, its
        connection and workloads stay). Returns what was done."""
        child = self._agent(node)
        if not child.alive:
            raise CliError(f"{node} is down already ({child.exit_reason})", code=4)
        if silent:
            if node in self._stopped:
                raise CliError(f"{node} is stopped already", code=4)
            child.signal_group(signal.SIGSTOP)
            self._stopped.add(node)
            self.agents[node] = "stopped"
            done = f"stopped the agent of {node} (SIGSTOP): its heartbeats stop"
        else:
            if child.proc is not None:  # told here, not again as a surprise by check()
                self._reported.add(child.proc.pid)
            # Everything at once, as a power cut: the agent is frozen while its workloads are
            # found and killed, so it cannot restart them, and its will fires (at SIGKILL)
            # only when they are gone, so no replacement runs beside a dying original.
            child.signal_group(signal.SIGSTOP)
            gone = kill_node_workloads(self.fleet_id, self.state_dir, node)
            child.signal_group(signal.SIGKILL)
            if child.proc is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.proc.wait(timeout=10)
            self._stopped.discard(node)
            self.agents[node] = "killed"
            done = (
                f"killed {node} (SIGKILL): its agent, {gone['processes']} workload processes "
                f"and {gone['containers']} containers"
            )
        self.note(done)
        return done

    def revive(self, node: str) -> str:
        """Bring ``node`` back: SIGCONT of a stopped agent, or its agent started again with
        the same configuration and state directory. Returns what was done."""
        child = self._agent(node)
        if node in self._stopped and child.alive:
            child.signal_group(signal.SIGCONT)
            self._stopped.discard(node)
            done = f"resumed the agent of {node} (SIGCONT)"
        elif child.alive:
            raise CliError(f"{node} is running; nothing to revive", code=4)
        else:
            self._stopped.discard(node)
            child.start()
            done = f"started the agent of {node} again (same config and state directory)"
        self.agents[node] = "running"
        self.note(done)
        return done
