"""The label expression language of ``placement.labels``."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from fogmesh.protocol.errors import ContractError
from fogmesh.protocol.manifest import AppManifest, parse_label_expr

LABELS = {"zone": "north", "tier": "edge", "gpu": "true", "site": "plant 7"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("zone == north", True),
        ("zone == south", False),
        ("zone != south", True),
        ("missing != x", True),
        ("missing == x", False),
        ("gpu exists", True),
        ("camera exists", False),
        ("tier in (edge, fog)", True),
        ("tier in (cloud)", False),
        ("missing in (a, b)", False),
        ("tier not in (cloud, fog)", True),
        ("missing not in (a)", True),
        ("site == 'plant 7'", True),
        ('site == "plant 7"', True),
        ("zone == north and tier == edge", True),
        ("zone == north and tier == cloud", False),
        ("zone == south or tier == edge", True),
        ("zone == north AND tier == edge", True),
        ("zone == south OR gpu exists", True),
        ("zone == north && (tier == cloud || gpu == true)", True),
        ("not zone == south", True),
        ("NOT (zone == north)", False),
        ("zone == south or zone == north and tier == cloud", False),  # and binds tighter
        ("(zone == south or zone == north) and tier == edge", True),
        ("kubernetes.io/arch == amd64 or zone exists", True),
    ],
)
def test_evaluates(text: str, expected: bool) -> None:
    assert parse_label_expr(text).evaluate(LABELS) is expected


@pytest.mark.parametrize(
    "text",
    ["", "   ", "zone ==", "zone = north", "zone north", "(zone exists", "zone exists)",
     "tier in ()", "tier in (a,", "and zone exists", "zone exists or", "zone == 'open"],
)  # fmt: skip
def test_rejects_bad_syntax(text: str) -> None:
    with pytest.raises(ContractError):
        parse_label_expr(text)


def test_manifest_error_names_the_field() -> None:
    doc = {
        "name": "app",
        "components": [{"name": "c", "image": "i", "placement": {"labels": "zone =="}}],
    }
    with pytest.raises(ValidationError) as info:
        AppManifest.model_validate(doc)
    locs = [".".join(str(p) for p in e["loc"]) for e in info.value.errors()]
    assert "components.0.placement.labels" in locs
