"""Rendering a parsed template with one key's inputs and the closed set of functions.

The values a template can see are text, integers, lists of text and the key's own field
maps; ``None`` stands for what is absent (``.previous`` outside a grace period), renders
as nothing, and is dropped by ``list``. Every string made on the way is held to
``limit`` characters, so no template can make the operator build more than its output
bound, however often it repeats an input.

An error here says which function or input failed and why, never what it held.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import quote_plus

from keykeeper.errors import TemplateError
from keykeeper.shaping.syntax import Call, Input, Literal, Node, Part, Pipeline

Scalar = str | int | None
Data = Scalar | list[Scalar] | dict[str, str]


@dataclass(frozen=True)
class Inputs:
    """What a template may read: this key's own value or fields, the previous version's
    (during a grace period), and who and which version it is. ``binary`` names the
    fields (``""``: the value) that are not UTF-8 text, so no template may use them."""

    value: str | None
    fields: dict[str, str] = field(default_factory=dict)
    previous: str | None = None
    previous_fields: dict[str, str] | None = None
    version: int = 0
    fingerprint: str = ""
    namespace: str = ""
    name: str = ""
    binary: frozenset[str] = frozenset()

    def __repr__(self) -> str:  # values never reach a log through repr()
        return f"Inputs(version={self.version}, fields={sorted(self.fields)})"


def _text(data: Data, what: str) -> str:
    if data is None:
        return ""
    if isinstance(data, (str, int)):
        return str(data)
    raise TemplateError(f"{what} is a list or a map; pipe it to toJson or join to write it")


def _one_text(function: str) -> Callable[[list[Data]], Data]:
    transform = {
        "b64enc": lambda s: base64.b64encode(s.encode()).decode(),
        "urlquery": lambda s: quote_plus(s, safe=""),
        "quote": lambda s: json.dumps(s, ensure_ascii=False),
        "trim": str.strip,
        "upper": str.upper,
        "lower": str.lower,
    }[function]

    def apply(args: list[Data]) -> Data:
        if len(args) != 1:
            raise TemplateError(f"{function} takes one argument, got {len(args)}")
        return str(transform(_text(args[0], f"the argument of {function}")))

    return apply


def _to_json(args: list[Data]) -> Data:
    if len(args) != 1:
        raise TemplateError(f"toJson takes one argument, got {len(args)}")
    return json.dumps(args[0], ensure_ascii=False, separators=(",", ":"))


def _default(args: list[Data]) -> Data:
    if len(args) != 2:
        raise TemplateError(f"default takes two arguments (a default and a value), got {len(args)}")
    given = args[1]
    return args[0] if given is None or given == "" or given == [] or given == {} else given


def _list(args: list[Data]) -> Data:
    out: list[Scalar] = []
    for arg in args:
        if isinstance(arg, (list, dict)):
            raise TemplateError("list takes text or numbers, not a list or a map")
        if arg is not None:
            out.append(arg)
    return out


def _join(args: list[Data]) -> Data:
    if len(args) != 2 or not isinstance(args[1], list):
        raise TemplateError('join takes a separator and a list: join "," (list .value .previous)')
    separator = _text(args[0], "the separator of join")
    return separator.join(_text(item, "an item of join") for item in args[1])


FUNCTIONS: Mapping[str, Callable[[list[Data]], Data]] = {
    "toJson": _to_json,
    "default": _default,
    "list": _list,
    "join": _join,
    **{name: _one_text(name) for name in ("b64enc", "urlquery", "quote", "trim", "upper", "lower")},
}
FUNCTION_NAMES = frozenset(FUNCTIONS)


class Renderer:
    """Renders parsed templates for one key's inputs; ``limit``: characters, per string."""

    def __init__(self, inputs: Inputs, limit: int) -> None:
        self.inputs, self.limit = inputs, limit

    def render(self, parts: tuple[Part, ...]) -> str:
        out: list[str] = []
        size = 0
        for part in parts:
            text = part if isinstance(part, str) else _text(self.pipeline(part), "a value")
            size += len(text)
            if size > self.limit:
                raise TemplateError(f"the output is over {self.limit} characters")
            out.append(text)
        return "".join(out)

    def pipeline(self, pipeline: Pipeline) -> Data:
        result: Data = None
        for index, command in enumerate(pipeline.commands):
            piped = [result] if index else []
            if isinstance(command, Call):
                result = self.call(command, piped)
            elif piped:
                raise TemplateError("only a function can follow |")
            else:
                result = self.node(command)
        return result

    def call(self, call: Call, piped: list[Data]) -> Data:
        args = [self.node(arg) for arg in call.args] + piped
        result = FUNCTIONS[call.function](args)
        if isinstance(result, str) and len(result) > self.limit:
            raise TemplateError(f"{call.function} made more than {self.limit} characters")
        if isinstance(result, list) and sum(len(str(item)) for item in result) > self.limit:
            raise TemplateError(f"{call.function} made more than {self.limit} characters")
        return result

    def node(self, node: Node) -> Data:
        if isinstance(node, Literal):
            return node.value
        if isinstance(node, Pipeline):
            return self.pipeline(node)
        if isinstance(node, Call):
            return self.call(node, [])
        return self.input(node)

    def input(self, wanted: Input) -> Data:
        inputs = self.inputs
        if wanted.map:
            fields = inputs.fields if wanted.map == "fields" else inputs.previous_fields
            if not wanted.name:
                for name in sorted(inputs.binary):
                    self._refuse_binary(name)
                return dict(fields) if fields is not None else None
            self._refuse_binary(wanted.name)
            if wanted.map == "fields" and wanted.name not in inputs.fields:
                raise TemplateError(
                    f".fields.{wanted.name}: the key has no field {wanted.name!r} "
                    f"(its fields: {', '.join(sorted(inputs.fields)) or 'none, it has one value'})"
                )
            return None if fields is None else fields.get(wanted.name)
        if wanted.name in ("value", "previous"):
            if inputs.value is None:
                raise TemplateError(
                    f".{wanted.name}: the key has fields ({', '.join(sorted(inputs.fields))}); "
                    f"use .fields.<field>"
                )
            self._refuse_binary("")
            return inputs.value if wanted.name == "value" else inputs.previous
        facts: dict[str, Data] = {
            "version": inputs.version,
            "fingerprint": inputs.fingerprint,
            "namespace": inputs.namespace,
            "name": inputs.name,
        }
        return facts[wanted.name]

    def _refuse_binary(self, name: str) -> None:
        if name in self.inputs.binary:
            shown = f"field {name!r}" if name else "the value"
            raise TemplateError(f"{shown} is not UTF-8 text, so no template can use it")
