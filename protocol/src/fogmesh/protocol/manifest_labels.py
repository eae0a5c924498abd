"""The label expression language of a manifest's placement (``placement.labels``).

A label expression is a small language over a node's labels, after Open Horizon's policy
constraints::

    expr   := or
    or     := and (("or" | "||") and)*
    and    := unary (("and" | "&&") unary)*
    unary  := "not" unary | "(" expr ")" | test
    test   := KEY "exists" | KEY "==" VALUE | KEY "!=" VALUE
            | KEY "in" "(" VALUE ("," VALUE)* ")" | KEY "not" "in" "(" ... ")"

Keywords are case-insensitive (``AND`` works too). A VALUE is a bare word (letters, digits,
``_ . - / :``) or a single- or double-quoted string; comparisons are on strings. A test on a
label the node does not have is false, except ``!=`` and ``not in``, which are true.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from fogmesh.protocol.errors import ContractError

__all__ = ["LabelExpr", "parse_label_expr"]


@dataclass(frozen=True, slots=True)
class _Test:
    key: str
    op: str  # "exists", "==", "!=", "in", "not in"
    values: tuple[str, ...] = ()

    def evaluate(self, labels: Mapping[str, str]) -> bool:
        value = labels.get(self.key)
        if self.op == "exists":
            return value is not None
        hit = value is not None and value in self.values
        return hit if self.op in {"==", "in"} else not hit


@dataclass(frozen=True, slots=True)
class _Not:
    inner: LabelExpr

    def evaluate(self, labels: Mapping[str, str]) -> bool:
        return not self.inner.evaluate(labels)


@dataclass(frozen=True, slots=True)
class _BoolOp:
    op: str  # "and" or "or"
    parts: tuple[LabelExpr, ...]

    def evaluate(self, labels: Mapping[str, str]) -> bool:
        if self.op == "and":
            return all(p.evaluate(labels) for p in self.parts)
        return any(p.evaluate(labels) for p in self.parts)


LabelExpr = _Test | _Not | _BoolOp
"""A parsed label expression; ``expr.evaluate(labels)`` says whether a node's labels match."""

_TOKEN = re.compile(
    r"\s*(?:(?P<op>==|!=|&&|\|\||[(),])|(?P<q>'[^']*'|\"[^\"]*\")|(?P<word>[A-Za-z0-9_.\-/:]+))"
)
_KEYWORDS = {"and", "or", "not", "in", "exists"}


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise ContractError(f"unexpected character {text[pos:].strip()[:1]!r} at {pos}")
        pos = match.end()
        if match["op"]:
            tokens.append(("op", {"&&": "and", "||": "or"}.get(match["op"], match["op"])))
        elif match["q"]:
            tokens.append(("value", match["q"][1:-1]))
        elif match["word"].lower() in _KEYWORDS:
            tokens.append(("op", match["word"].lower()))
        else:
            tokens.append(("word", match["word"]))
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokenize(text)
        self.pos = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self, kind: str | None = None, text: str | None = None) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise ContractError(f"expression ends early; expected {text or kind or 'more'}")
        if (kind and token[0] != kind) or (text and token[1] != text):
            raise ContractError(f"expected {text or kind}, found {token[1]!r}")
        self.pos += 1
        return token

    def accept(self, text: str) -> bool:
        token = self.peek()
        found = token is not None and token[0] == "op" and token[1] == text
        self.pos += found
        return found

    def parse(self) -> LabelExpr:
        expr = self.bool_op("or")
        if self.peek() is not None:
            raise ContractError(f"unexpected {self.tokens[self.pos][1]!r} after expression")
        return expr

    def bool_op(self, op: str) -> LabelExpr:
        parts = [self.bool_op("and") if op == "or" else self.unary()]
        while self.accept(op):
            parts.append(self.bool_op("and") if op == "or" else self.unary())
        return parts[0] if len(parts) == 1 else _BoolOp(op, tuple(parts))

    def unary(self) -> LabelExpr:
        if self.accept("not"):
            return _Not(self.unary())
        if self.accept("("):
            inner = self.bool_op("or")
            self.take("op", ")")
            return inner
        return self.test()

    def value(self) -> str:
        token = self.peek()
        if token is None or token[0] == "op":
            raise ContractError(f"expected a value, found {token[1] if token else 'the end'!r}")
        self.pos += 1
        return token[1]

    def test(self) -> LabelExpr:
        key = self.take("word")[1]
        if self.accept("exists"):
            return _Test(key, "exists")
        for op in ("==", "!="):
            if self.accept(op):
                return _Test(key, op, (self.value(),))
        negate = self.accept("not")
        self.take("op", "in")
        self.take("op", "(")
        values = [self.value()]
        while self.accept(","):
            values.append(self.value())
        self.take("op", ")")
        return _Test(key, "not in" if negate else "in", tuple(values))


def parse_label_expr(text: str) -> LabelExpr:
    """Parse a label expression; raise :class:`ContractError` saying what is wrong."""
    if not text.strip():
        raise ContractError("label expression is empty")
    return _Parser(text).parse()
