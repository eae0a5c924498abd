"""The mesh file's link paths and the pieces that keep their books (no network)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fogmesh.broker.config import (
    MeshConfigError,
    MeshSpec,
    PathSpec,
    ResolvedEndpoint,
    RuleSpec,
    load_mesh,
)
from fogmesh.broker.paths import LinkPath, PathBook
from fogmesh.broker.rules import routes_from
from tests.support.mesh_file import broker_spec, link_spec, write_mesh


def _mesh(tmp_path: Path, **link: Any) -> Path:
    brokers = {"site": broker_spec(tmp_path, "site"), "cloud": broker_spec(tmp_path, "cloud")}
    rules = link.pop("rules", [{"pattern": "ctl/#", "paths": ["wan", "radio"]}])
    return write_mesh(
        tmp_path / "mesh.yaml", brokers, [link_spec("cloud", "site", "cloud", rules, **link)]
    )


def test_paths_resolve_in_order_with_the_remote_as_default(tmp_path: Path) -> None:
    paths = [{"name": "wan"}, {"name": "radio", "host": "10.9.9.9", "port": 1999, "rate": 100}]
    mesh = load_mesh(_mesh(tmp_path, paths=paths))
    link = mesh.links_of("site")[0]
    resolved = mesh.resolve_paths(link)
    assert [p.name for p, _ in resolved] == ["wan", "radio"]
    cloud_port = mesh.brokers["cloud"].listeners[0].port
    assert (resolved[0][1].host, resolved[0][1].port) == ("127.0.0.1", cloud_port)
    assert (resolved[1][1].host, resolved[1][1].port) == ("10.9.9.9", 1999)
    assert resolved[1][1].kind == "amqtt"  # the remote broker's kind, at another address
    assert resolved[1][1].username == "bridge"


def test_a_link_without_paths_has_the_default_one(tmp_path: Path) -> None:
    mesh = load_mesh(_mesh(tmp_path, rules=[{"pattern": "ctl/#"}]))
    resolved = mesh.resolve_paths(mesh.links_of("site")[0])
    assert [p.name for p, _ in resolved] == ["default"]


@pytest.mark.parametrize(
    ("paths", "rules", "reason"),
    [
        ([{"name": "wan"}, {"name": "wan"}], [{"pattern": "a/#"}], "path names must be unique"),
        ([{"name": "wan"}], [{"pattern": "a/#", "paths": ["radio"]}], "unknown paths"),
        ([{"name": "wan", "broker": "nowhere"}], [{"pattern": "a/#"}], "unknown broker"),
    ],
)
def test_bad_paths_are_refused(
    tmp_path: Path, paths: list[dict[str, Any]], rules: list[dict[str, Any]], reason: str
) -> None:
    with pytest.raises(MeshConfigError, match=reason):
        load_mesh(_mesh(tmp_path, paths=paths, rules=rules))


def test_routes_know_their_paths() -> None:
    routes = routes_from(
        [
            RuleSpec(pattern="ctl/#", direction="both", paths=["wan", "radio"]),
            RuleSpec(pattern="bulk/#", direction="out", remote_prefix="site/", paths=["wan"]),
            RuleSpec(pattern="any/#"),
        ]
    )
    bulk = next(r for r in routes if r.source_filter == "bulk/#")
    assert bulk.dest_filter == "site/bulk/#"
    assert bulk.uses("wan")
    assert not bulk.uses("radio")
    assert all(r.uses("radio") for r in routes if r.source_filter != "bulk/#")


def test_the_book_counts_per_month_and_survives_a_restart(tmp_path: Path) -> None:
    file = tmp_path / "paths.json"
    book = PathBook(file)
    radio = LinkPath(1, PathSpec(name="radio", budget_bytes=100), _end())
    book.add("radio", 60)
    assert not book.spent(radio)
    book.add("radio", 40)
    assert book.spent(radio)
    book.save()
    again = PathBook(file)
    assert again.bytes == {"radio": 100}
    assert again.spent(radio)
    # another month's counts start again at zero
    data = json.loads(file.read_text())
    file.write_text(json.dumps({**data, "month": "1999-01"}))
    assert PathBook(file).bytes == {}
    # an unreadable file is a fresh start, not a crash
    file.write_text("not json")
    assert PathBook(file).bytes == {}


def _end() -> ResolvedEndpoint:
    return ResolvedEndpoint(
        host="127.0.0.1", port=1, username=None, password=None, tls=None, kind="amqtt"
    )


def test_mosquitto_renders_paths_as_addresses_and_refuses_what_it_cannot_do(
    tmp_path: Path,
) -> None:
    from fogmesh.broker.mosquitto import _conf  # the mosquitto.conf text, written nowhere

    def render_config(mesh: MeshSpec, name: str) -> str:
        return _conf(mesh, name, tmp_path / "etc", "mosquitto")

    paths = [{"name": "wan"}, {"name": "radio", "host": "10.9.9.9", "port": 1999}]
    mesh = load_mesh(_mesh(tmp_path, paths=paths, rules=[{"pattern": "ctl/#"}]))
    text = render_config(mesh, "site")
    cloud_port = mesh.brokers["cloud"].listeners[0].port
    assert f"address 127.0.0.1:{cloud_port} 10.9.9.9:1999" in text
    assert "round_robin false" in text
    limited = load_mesh(_mesh(tmp_path, paths=paths))  # ctl/# names its paths
    with pytest.raises(MeshConfigError, match="cannot keep rules off a path"):
        render_config(limited, "site")
