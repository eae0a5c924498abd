"""rich tables for what the registry and the scheduler answer."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from enum import StrEnum
from typing import TypeVar

import yaml
from pydantic import BaseModel
from rich.console import Console
from rich.table import Table

from fogmesh.protocol import Event
from fogmesh.protocol.apps import AppInfo, AppSummary, PlacementInfo
from fogmesh.protocol.queries import NodeInfo, WorkloadInfo

__all__ = [
    "OutputFormat",
    "app_table",
    "apps_table",
    "events_table",
    "human_bytes",
    "nodes_table",
    "render_models",
    "show",
    "workloads_table",
]

M = TypeVar("M", bound=BaseModel)


class OutputFormat(StrEnum):
    """``-o``: a table for people, or the reply's own models for scripts."""

    TABLE = "table"
    JSON = "json"
    YAML = "yaml"


def render_models(items: Sequence[BaseModel], fmt: OutputFormat) -> str:
    """A JSON array (valid ``jq`` input) or a YAML list of the models, as the reply holds them."""
    data = [item.model_dump(mode="json") for item in items]
    if fmt is OutputFormat.YAML:
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def show(
    console: Console,
    items: Sequence[M],
    fmt: OutputFormat,
    table: Callable[[Iterable[M]], Table],
) -> None:
    """Print ``items`` as ``fmt``: a rich table, or plain JSON / YAML with no markup or wrapping."""
    if fmt is OutputFormat.TABLE:
        console.print(table(items))
        return
    console.file.write(render_models(items, fmt))
    console.file.flush()


_STATE_STYLE = {
    "online": "green",
    "stale": "yellow",
    "offline": "red",
    "unreachable": "magenta",  # alive as far as anyone knows: its site's link is down
    "running": "green",
    "failed": "red",
    "stopped": "yellow",
}


def human_bytes(value: float | None) -> str:
    """``1536`` -> ``1.5 KiB``."""
    if value is None:
        return "-"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"  # pragma: no cover


def _ago(ts: float) -> str:
    if not ts:
        return "-"
    seconds = max(0.0, time.time() - ts)
    if seconds < 120:
        return f"{seconds:.0f}s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m ago"
    return f"{seconds / 3600:.1f}h ago"


def _styled(state: str) -> str:
    style = _STATE_STYLE.get(state)
    return f"[{style}]{state}[/]" if style else state


def nodes_table(nodes: Iterable[NodeInfo]) -> Table:
    """One row per node: state, arch, site, CPU and memory use, last seen."""
    table = Table(title="nodes")
    for column in ("node", "state", "arch", "site", "cpu", "memory", "labels", "last seen"):
        table.add_column(column)
    for node in nodes:
        facts, usage = node.facts, node.usage
        memory = (
            f"{human_bytes(usage.memory_used_bytes)} / {human_bytes(usage.memory_total_bytes)}"
            if usage
            else "-"
        )
        table.add_row(
            node.node,
            _styled(node.state),
            facts.arch if facts else "-",
            facts.site if facts else "-",
            f"{usage.cpu_percent:.0f}%" if usage else "-",
            memory,
            ",".join(f"{k}={v}" for k, v in sorted(node.labels.items())) or "-",
            _ago(node.last_seen),
        )
    return table


def workloads_table(workloads: Iterable[WorkloadInfo]) -> Table:
    """One row per workload: where it runs and in which phase."""
    table = Table(title="workloads")
    for column in ("workload", "app", "component", "node", "phase", "restarts", "reason"):
        table.add_column(column)
    for w in workloads:
        table.add_row(
            w.name,
            w.app,
            w.component,
            w.node,
            _styled(w.phase.value) + (f" (as of {w.age_s:.0f}s ago)" if w.age_s else ""),
            str(w.restarts),
            w.reason[:60] or "-",
        )
    return table


def apps_table(apps: Iterable[AppSummary]) -> Table:
    """One row per app."""
    table = Table(title="apps")
    for column in ("app", "version", "workloads", "pending", "not running"):
        table.add_column(column)
    for a in apps:
        # placed, but no agent reports it running past the scheduler's bound: an alarm
        alarm = f"[red]{a.not_running}[/]" if a.not_running else "0"
        table.add_row(a.name, a.version, str(a.workloads), str(a.pending), alarm)
    return table


def app_table(app: AppInfo) -> Table:
    """An app's placements."""
    table = Table(title=f"{app.name} (version {app.version})")
    for column in ("workload", "component", "replica", "node", "version"):
        table.add_column(column)
    for p in app.placements:
        table.add_row(
            p.workload,
            p.component,
            str(p.replica),
            _placed_on(p),
            p.version + (" (retiring)" if p.retiring else ""),
        )
    return table


def _placed_on(p: PlacementInfo) -> str:
    """The placement's node, ``pending``, or the node with how long nothing has run there."""
    if p.node is None:
        return "[yellow]pending[/]"
    if p.not_running_s is not None:
        return f"{p.node} [red](not running for {p.not_running_s:.0f}s)[/]"
    return p.node


def events_table(events: Iterable[Event]) -> Table:
    """One row per event, oldest first."""
    table = Table(title="events")
    for column in ("when", "kind", "node", "app", "workload", "message"):
        table.add_column(column)
    for e in events:
        table.add_row(
            time.strftime("%H:%M:%S", time.localtime(e.ts)),
            e.kind.value,
            e.node or "-",
            e.app or "-",
            e.workload or "-",
            e.message[:80] or "-",
        )
    return table
