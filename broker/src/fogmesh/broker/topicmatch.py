"""MQTT topic-filter helpers: validity, matching, and "is one filter inside another"."""

from __future__ import annotations

__all__ = ["filter_within", "is_valid_filter", "matches"]


def is_valid_filter(flt: str) -> bool:
    """True if ``flt`` is a legal MQTT subscription filter (wildcards on whole levels only)."""
    if not flt or "\x00" in flt or len(flt.encode()) > 65535:
        return False
    levels = flt.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            return False
        if "+" in level and level != "+":
            return False
    return True


def matches(topic: str, flt: str) -> bool:
    """True if the concrete ``topic`` matches the filter ``flt`` (MQTT 3.1.1 rules)."""
    if topic.startswith("$") and flt[:1] in ("+", "#"):
        return False
    t_levels = topic.split("/")
    f_levels = flt.split("/")
    for i, level in enumerate(f_levels):
        if level == "#":
            return True
        if i >= len(t_levels) or level not in ("+", t_levels[i]):
            return False
    return len(f_levels) == len(t_levels)


def filter_within(flt: str, allowed: str) -> bool:
    """True if every topic that ``flt`` can match is also matched by ``allowed``.

    Used for subscribe ACLs: a client allowed ``data/acme/#`` may subscribe to
    ``data/acme/+/x`` but not to ``data/#``.
    """
    f_levels = flt.split("/")
    a_levels = allowed.split("/")
    for i, level in enumerate(a_levels):
        if level == "#":
            return True
        if i >= len(f_levels):
            return False
        sub = f_levels[i]
        if level == "+":
            if sub == "#":
                return False
            continue
        if sub != level:  # a wildcard in flt is wider than a literal level in allowed
            return False
    return len(f_levels) == len(a_levels)
