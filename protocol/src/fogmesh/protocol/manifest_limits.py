"""The bounds on a manifest's free-form fields, so no manifest can carry a payload of its own.

A manifest travels in a request, is stored by the scheduler, copied into every node's desired
state (retained on the broker) and handed to ``execve`` on the node. Each bound is named once
here; a value past one is a validation error of that field (``invalid_payload`` naming it, e.g.
``manifest.components.0.env``). ``docs/manifest.md`` lists them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Final

from pydantic import AfterValidator, Field

__all__ = [
    "MAX_ARCHES",
    "MAX_COMMAND_ARGS",
    "MAX_COMMAND_ARG_CHARS",
    "MAX_COMMAND_TOTAL_CHARS",
    "MAX_DEVICES",
    "MAX_ENV_NAME_CHARS",
    "MAX_ENV_TOTAL_CHARS",
    "MAX_ENV_VALUE_CHARS",
    "MAX_ENV_VARS",
    "MAX_LABELS",
    "MAX_LABEL_KEY_CHARS",
    "MAX_LABEL_VALUE_CHARS",
    "MAX_REFS",
    "MAX_SHORT_CHARS",
    "MAX_STREAMS",
    "MAX_VOLUMES",
    "Arg",
    "EnvName",
    "EnvValue",
    "LabelKey",
    "LabelValue",
    "Short",
    "check_command_total",
    "check_env_total",
]

MAX_ENV_VARS: Final = 128
MAX_ENV_NAME_CHARS: Final = 256
MAX_ENV_VALUE_CHARS: Final = 16 * 1024
MAX_ENV_TOTAL_CHARS: Final = 64 * 1024
"""All of a component's names and values together."""
MAX_COMMAND_ARGS: Final = 256
MAX_COMMAND_ARG_CHARS: Final = 8 * 1024
MAX_COMMAND_TOTAL_CHARS: Final = 32 * 1024
MAX_LABELS: Final = 64
MAX_LABEL_KEY_CHARS: Final = 128
MAX_LABEL_VALUE_CHARS: Final = 256
MAX_VOLUMES: Final = 32
MAX_STREAMS: Final = 64
"""Inputs, and outputs, of one component."""
MAX_REFS: Final = 100
"""Components named in affinity, and in anti-affinity (an app has at most 100)."""
MAX_ARCHES: Final = 16
MAX_DEVICES: Final = 64
MAX_SHORT_CHARS: Final = 256
"""An architecture or a device path."""


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


def _env_name(value: str) -> str:
    if "=" in value:
        raise ValueError("an environment variable's name must not contain '='")
    return _no_nul(value)


EnvName = Annotated[
    str, Field(min_length=1, max_length=MAX_ENV_NAME_CHARS), AfterValidator(_env_name)
]
EnvValue = Annotated[str, Field(max_length=MAX_ENV_VALUE_CHARS), AfterValidator(_no_nul)]
Arg = Annotated[str, Field(max_length=MAX_COMMAND_ARG_CHARS), AfterValidator(_no_nul)]
LabelKey = Annotated[
    str, Field(min_length=1, max_length=MAX_LABEL_KEY_CHARS), AfterValidator(_no_nul)
]
LabelValue = Annotated[str, Field(max_length=MAX_LABEL_VALUE_CHARS), AfterValidator(_no_nul)]
Short = Annotated[str, Field(min_length=1, max_length=MAX_SHORT_CHARS), AfterValidator(_no_nul)]


def check_env_total(env: Mapping[str, str]) -> Mapping[str, str]:
    """Refuse an environment whose names and values add up past :data:`MAX_ENV_TOTAL_CHARS`."""
    total = sum(len(k) + len(v) for k, v in env.items())
    if total > MAX_ENV_TOTAL_CHARS:
        raise ValueError(
            f"names and values add up to {total} characters, over {MAX_ENV_TOTAL_CHARS}"
        )
    return env


def check_command_total(command: Sequence[str]) -> Sequence[str]:
    """Refuse a command whose arguments add up past :data:`MAX_COMMAND_TOTAL_CHARS`."""
    total = sum(len(arg) for arg in command)
    if total > MAX_COMMAND_TOTAL_CHARS:
        raise ValueError(f"arguments add up to {total} characters, over {MAX_COMMAND_TOTAL_CHARS}")
    return command
