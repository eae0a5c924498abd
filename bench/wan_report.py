"""The WAN bench's report: the measured configurations' figures against the goals, as
``bench/results/wan.json`` holds them and as the run's table prints them."""

from __future__ import annotations

from typing import Any

from _common import load_average
from wan_site import APP_DESIGNS

__all__ = ["GOALS", "merged", "payload", "show"]

GOALS = {"10_nodes": 10e6, "1_node": 20e6}
"""Bytes per idle node-month (issue 13), and 20 idle workloads may add at most 20 %."""


def _figures(
    results: dict[str, dict[str, Any]], design: str, *, plain: bool = True
) -> dict[str, dict[str, int]]:
    """``{site size: {workloads: bytes per node-month}}`` of one design (``plain``: all the
    bytes; else without the app's own data, ``fm/v1/data``)."""
    figure = "bytes_per_node_month" if plain else "without_app_data_per_node_month"
    out: dict[str, dict[str, int]] = {}
    for nodes, size in ((1, "1_node"), (10, "10_nodes")):
        for w in (0, 20):
            r = results.get(f"{design}/{nodes}n/{w}w")
            if r is not None:
                out.setdefault(size, {})[str(w)] = r[figure]
    return out


def _verdicts(figures: dict[str, dict[str, int]]) -> dict[str, str]:
    out = {}
    for size, goal in GOALS.items():
        got = figures.get(size, {})
        if "0" in got:
            ok = got["0"] <= goal
            out[f"{size} idle <= {goal / 1e6:g} MB"] = (
                f"{'met' if ok else 'MISSED'}: {got['0'] / 1e6:.2f} MB"
            )
        if "0" in got and "20" in got and got["0"]:
            extra = got["20"] / got["0"] - 1
            ok = extra <= 0.20
            out[f"{size} 20 workloads add <= 20%"] = f"{'met' if ok else 'MISSED'}: {extra:+.1%}"
    return out


def _cloud_tier(results: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """The cloud configurations' figures: per design, site size, bytes per idle node-month."""
    out: dict[str, Any] = {}
    for design in ("lean", "previous"):
        for nodes, size in ((1, "1_node"), (10, "10_nodes")):
            r = results.get(f"cloud-{design}/{nodes}n/0w")
            if r is None:
                continue
            out.setdefault("wan_bytes_per_node_month", {}).setdefault(design, {})[size] = r[
                "bytes_per_node_month"
            ]
            out.setdefault("by_tree_per_node_month", {}).setdefault(design, {})[size] = r[
                "by_tree_per_node_month"
            ]
            out.setdefault("relay_bytes_per_node_month", {}).setdefault(design, {})[size] = r[
                "relay_bytes_per_node_month"
            ]
    if not out:
        return None
    lean = out["wan_bytes_per_node_month"].get("lean", {})
    out["goals"] = {
        f"{size} idle <= {goal / 1e6:g} MB": (
            f"{'met' if lean[size] <= goal else 'MISSED'}: {lean[size] / 1e6:.2f} MB"
        )
        for size, goal in GOALS.items()
        if size in lean
    }
    return out


def merged(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """``new`` over ``old``: keys this run measured replace theirs, the rest are kept (each
    group of figures names the run it came from)."""
    out = dict(old)
    for key, value in new.items():
        if value is None or value == {}:
            continue
        if key in ("configurations", "goals") and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


def payload(
    results: dict[str, dict[str, Any]], run: dict[str, Any], *, has_app: bool
) -> dict[str, Any]:
    """The result file's figures of the run's ``results`` (by configuration key)."""
    figures = _figures(results, "on-change")
    app = {
        design: {s: v.get("0") for s, v in _figures(results, f"{design}-app").items()}
        for design in APP_DESIGNS
    }
    app_fogmesh = {
        design: {s: v.get("0") for s, v in _figures(results, f"{design}-app", plain=False).items()}
        for design in APP_DESIGNS
    }
    cloud = _cloud_tier(results)
    return {
        "wan_bytes_per_node_month": figures,
        "baseline_wan_bytes_per_node_month": _figures(results, "previous"),
        "sample_app_wan_bytes_per_node_month": app if has_app else None,
        "sample_app_without_its_data_per_node_month": app_fogmesh if has_app else None,
        "sample_app_run": run if has_app else None,
        "cloud_tier": None if cloud is None else {**cloud, "run": run},
        "goals": _verdicts(figures),
        **(run if figures else {}),
        "setup": "embedded brokers (cloud, site) and fogmesh up's WAN link rules; real agents "
        "(native runtime, sleep workloads), steady idle node usage; relay counts socket bytes; "
        "cloud_tier: fogmesh up's fleet plan (cloud and two site brokers, registry, scheduler, "
        "migrators, artefact store and caches), idle agents on both sites, site-a's link counted; "
        "sample app: its node reports a busy box's usage (CPU 20-80 %, memory 1.0-1.4 of 2 GB), "
        "what crosses besides the app's data split by the relay",
        "configurations": results,
    }


def show(result: dict[str, Any], duration: float, load_before: list[float]) -> None:
    """Print the table of a run's :func:`payload`: each configuration, the sample app's
    figures without its data, the goals' verdicts."""
    print(
        f"\nWAN bytes per node-month (link socket, both ways; {duration:.0f} s each, "
        f"load {load_before} -> {load_average()})"
    )
    print(f"{'configuration':34} {'bytes/node-month':>18} {'MB':>8}   biggest trees")
    for key, r in sorted(result["configurations"].items()):
        top = sorted(r["by_tree_per_node_month"].items(), key=lambda kv: -kv[1])[:4]
        trees = ", ".join(f"{k} {v / 1e6:.2f}" for k, v in top)
        month = r["bytes_per_node_month"]
        again = r["agent_reconnects"]
        print(f"{key:34} {month:>18,} {month / 1e6:>8.2f}   {trees}; {again} reconnects")
    for design, sizes in (result["sample_app_without_its_data_per_node_month"] or {}).items():
        shown = ", ".join(f"{s} {v / 1e6:.2f} MB" for s, v in sizes.items() if v is not None)
        print(f"sample app, without its data, {design}: {shown}")
    cloud = result["cloud_tier"] or {}
    goals = {
        **result["goals"],
        **{f"cloud tier {k}": v for k, v in cloud.get("goals", {}).items()},
    }
    for goal, verdict in goals.items():
        print(f"goal {goal}: {verdict}")
