"""The reference docs name every setting the code has: each agent config key, each registry flag."""

from __future__ import annotations

import contextlib
import io
import re

from fogmesh.agent.config import AgentConfig
from fogmesh.registry.cli import parse_args
from tests.support.brokers import REPO


def _section(doc: str, heading: str) -> str:
    text = (REPO / "docs" / doc).read_text()
    start = text.index(heading)
    end = text.find("\n## ", start + len(heading))
    return text[start : end if end > 0 else None]


def test_agent_doc_lists_every_config_key() -> None:
    spans = re.findall(r"`([a-z_.]+)`", _section("agent.md", "## Configuration"))
    named = {part for span in spans for part in span.split(".") if part}
    missing = [key for key in AgentConfig.model_fields if key not in named]
    broker = AgentConfig.model_fields["broker"].annotation
    assert broker is not None
    missing += [f"broker.{key}" for key in broker.model_fields if key not in named]
    assert missing == [], f"docs/agent.md does not list {missing}"


def test_registry_doc_lists_every_option() -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        parse_args(["--help"])
    flags = set(re.findall(r"(--[a-z][a-z-]+)", out.getvalue())) - {"--help"}
    text = (REPO / "docs" / "registry.md").read_text()
    missing = sorted(flag for flag in flags if f"`{flag}`" not in text)
    assert missing == [], f"docs/registry.md does not list {missing}"
