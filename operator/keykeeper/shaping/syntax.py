"""Reading a projection template: the subset of Go's text/template users know from
ESO, VSO and Helm, and nothing else.

A template is text with actions ``{{ pipeline }}`` (``{{-`` and ``-}}`` trim the
space beside them; ``{{/* ... */}}`` is a comment). A pipeline is commands joined by
``|``; the value of each is passed as the last argument of the next. A command is an
input (``.value``, ``.fields.password``), a literal (``"text"``, `` `raw` ``, ``42``),
a parenthesised pipeline, or a function of the closed set in ``evaluate.FUNCTIONS``
with its arguments. There is no ``if``, ``range``, ``define``, ``template``, variable,
method call or attribute walk: a word that is not one of the functions is refused
here, before anything is rendered, and an input path is one of ``INPUTS``.

Every message names the data key and the column, and shows at most a short piece of
the template's own text (the tenant's spec, never a value).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from keykeeper.errors import TemplateError

MAX_DEPTH = 8  # parentheses inside one action
MAX_NODES = 4096  # actions and words of one data key's template
INPUTS = frozenset({"value", "previous", "version", "fingerprint", "namespace", "name"})
MAPS = frozenset({"fields", "previousFields"})

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PATH = re.compile(r"\.[A-Za-z_][A-Za-z0-9_.-]*|\.")
_NUMBER = re.compile(r"-?[0-9]+")
_ESCAPES = {"n": "\n", "t": "\t", '"': '"', "\\": "\\", "r": "\r"}


@dataclass(frozen=True)
class Input:
    """``.name`` or ``.fields.<field>``: ``map`` is "" for a top-level input."""

    name: str
    map: str = ""


@dataclass(frozen=True)
class Literal:
    value: str | int


@dataclass(frozen=True)
class Call:
    function: str
    args: tuple[Node, ...]


@dataclass(frozen=True)
class Pipeline:
    commands: tuple[Node, ...]  # each after the first gets the one before as last argument


Node = Input | Literal | Call | Pipeline
Part = str | Pipeline  # text to copy, or an action to evaluate


def parse(source: str, where: str, functions: frozenset[str]) -> tuple[Part, ...]:
    """The template ``source`` of data key ``where``, read whole; ``TemplateError`` if
    any part of it is outside the subset."""
    parts: list[Part] = []
    at, count = 0, 0
    while at < len(source):
        opening = source.find("{{", at)
        if opening < 0:
            parts.append(source[at:])
            break
        text = source[at:opening]
        inner_start = opening + 2
        if source.startswith("{{-", opening) and source[opening + 3 : opening + 4].isspace():
            text, inner_start = text.rstrip(), opening + 3
        closing = source.find("}}", inner_start)
        if closing < 0:
            raise _error(where, opening, "an action {{ is not closed with }}")
        inner_end, at = closing, closing + 2
        if source[closing - 1] == "-" and source[closing - 2 : closing - 1].isspace():
            inner_end = closing - 1
            at = _skip_space(source, at)
        if text:
            parts.append(text)
        inner = source[inner_start:inner_end]
        if inner.strip().startswith("/*"):
            if not inner.strip().endswith("*/"):
                raise _error(where, opening, "a comment {{/* ... */}} is not closed")
            continue
        count += 1
        parts.append(_Reader(inner, where, inner_start, functions).action())
        if count > MAX_NODES:
            raise _error(where, opening, f"more than {MAX_NODES} actions")
    return tuple(parts)


def _skip_space(source: str, at: int) -> int:
    while at < len(source) and source[at].isspace():
        at += 1
    return at


def _error(where: str, column: int, problem: str) -> TemplateError:
    return TemplateError(f"template of data key {where!r}, column {column + 1}: {problem}")


def _shown(text: str) -> str:
    return repr(text[:24] + ("..." if len(text) > 24 else ""))


class _Reader:
    """One action's pipeline, read left to right."""

    def __init__(self, text: str, where: str, offset: int, functions: frozenset[str]) -> None:
        self.text, self.where, self.offset, self.functions = text, where, offset, functions
        self.at, self.depth, self.words = 0, 0, 0

    def fail(self, problem: str) -> TemplateError:
        return _error(self.where, self.offset + self.at, problem)

    def action(self) -> Pipeline:
        pipeline = self.pipeline()
        self.space()
        if self.at < len(self.text):
            raise self.fail(f"unexpected {_shown(self.text[self.at :])}")
        return pipeline

    def space(self) -> None:
        while self.at < len(self.text) and self.text[self.at].isspace():
            self.at += 1

    def pipeline(self) -> Pipeline:
        commands = [self.command()]
        self.space()
        while self.text.startswith("|", self.at):
            self.at += 1
            commands.append(self.command())
            self.space()
        return Pipeline(tuple(commands))

    def command(self) -> Node:
        self.space()
        word = _WORD.match(self.text, self.at)
        if word is None:
            return self.operand()
        name = word.group()
        if name not in self.functions:
            raise self.fail(
                f"{_shown(name)} is not one of the template functions "
                f"({', '.join(sorted(self.functions))})"
            )
        self.at = word.end()
        args: list[Node] = []
        while True:
            self.space()
            if self.at >= len(self.text) or self.text[self.at] in "|)":
                return Call(name, tuple(args))
            args.append(self.operand())

    def operand(self) -> Node:
        self.space()
        self.words += 1
        if self.words > MAX_NODES:
            raise self.fail(f"more than {MAX_NODES} words in one action")
        if self.at >= len(self.text):
            raise self.fail("an action is empty, or ends where a value is expected")
        char = self.text[self.at]
        if char == "(":
            return self.group()
        if char == '"':
            return Literal(self.quoted())
        if char == "`":
            end = self.text.find("`", self.at + 1)
            if end < 0:
                raise self.fail("a raw string is not closed")
            value, self.at = self.text[self.at + 1 : end], end + 1
            return Literal(value)
        number = _NUMBER.match(self.text, self.at)
        if number is not None:
            self.at = number.end()
            return Literal(int(number.group()[:18]))
        if char == ".":
            return self.path()
        if _WORD.match(self.text, self.at):
            raise self.fail("a function's arguments are values; call a function in ( )")
        raise self.fail(f"unexpected {_shown(self.text[self.at :])}")

    def group(self) -> Pipeline:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.fail(f"parentheses nest deeper than {MAX_DEPTH}")
        self.at += 1
        inner = self.pipeline()
        self.space()
        if not self.text.startswith(")", self.at):
            raise self.fail("a ( is not closed")
        self.at += 1
        self.depth -= 1
        return inner

    def quoted(self) -> str:
        out: list[str] = []
        at = self.at + 1
        while at < len(self.text):
            char = self.text[at]
            if char == '"':
                self.at = at + 1
                return "".join(out)
            if char == "\\":
                escaped = self.text[at + 1 : at + 2]
                if escaped not in _ESCAPES:
                    self.at = at
                    raise self.fail('a string has an escape other than \\n \\t \\r \\" \\\\')
                out.append(_ESCAPES[escaped])
                at += 2
                continue
            out.append(char)
            at += 1
        raise self.fail("a string is not closed")

    def path(self) -> Input:
        found = _PATH.match(self.text, self.at)
        assert found is not None
        path = found.group()
        parts = path[1:].split(".") if path != "." else [""]
        if len(parts) == 1 and parts[0] in INPUTS:
            self.at = found.end()
            return Input(parts[0])
        if len(parts) == 2 and parts[0] in MAPS and parts[1]:
            self.at = found.end()
            return Input(parts[1], parts[0])
        if len(parts) == 1 and parts[0] in MAPS:
            self.at = found.end()
            return Input("", parts[0])
        raise self.fail(
            f"{_shown(path)} is not an input; the inputs are "
            + ", ".join(f".{name}" for name in sorted(INPUTS | MAPS))
            + " and .fields.<field>, .previousFields.<field>"
        )
