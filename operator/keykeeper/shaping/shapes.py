"""What one target's Secret holds: its type and its data, made from a key's opened values.

Three shapes, chosen per projection:

* one value (the default): ``<key>`` and, during a grace period, ``<key>.previous``;
* a key's fields, untemplated: one data key per field, and ``<field>.previous``;
* a template (the projection's own, or one the policy names): its data keys rendered
  by ``evaluate`` with this key's inputs, its type one of the policy's ``secretTypes``.

The output is checked before any write: at most ``MAX_OUTPUT`` bytes in all, data keys
that are Secret keys, the keys the type requires (basic-auth's username and password,
dockerconfigjson's ``.dockerconfigjson`` as JSON), and no key that means another type
(``.dockerconfigjson`` on an Opaque). What fails is a ``TemplateError`` that names the
data key and the rule, never a value or a rendered fragment.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

from keykeeper.api import names
from keykeeper.api.models import KeyPolicySpec, Projection
from keykeeper.api.templates import PREVIOUS_SUFFIX, REQUIRED_KEYS, TYPE_KEYS, SecretType, Template
from keykeeper.errors import TemplateError
from keykeeper.shaping import fields as key_fields
from keykeeper.shaping.evaluate import FUNCTION_NAMES, Inputs, Renderer
from keykeeper.shaping.syntax import Part, parse

MAX_OUTPUT = 256 * 1024  # bytes of one rendered Secret's data, in all


@dataclass(frozen=True)
class Shape:
    """A target's shape. ``template``: the template's canonical JSON ("" untemplated);
    ``fields``: a key's field names (() for one value); ``refusal``: why the policy
    does not let this projection be written (a template it does not have, a type it
    does not allow), said when it is rendered."""

    template: str = ""
    template_name: str = ""  # the policy's name for it; "" inline
    fields: tuple[str, ...] = ()
    refusal: str = ""

    @classmethod
    def of(cls, template: Template, name: str = "") -> Shape:
        return cls(json.dumps(template.model_dump(mode="json"), sort_keys=True), name)

    @property
    def plain(self) -> bool:
        """One value under the target's key: every projected Secret's shape before fields."""
        return not self.template and not self.fields and not self.refusal

    @property
    def label(self) -> str:
        """What status and the Secret's annotation name: ``<name or inline>@<digest>``,
        ``fields@<digest>``, or "" for one value."""
        if self.template:
            return f"{self.template_name or 'inline'}@{_digest(self.template)}"
        if self.fields:
            return f"fields@{_digest(','.join(self.fields))}"
        return ""

    @property
    def secret_type(self) -> SecretType:
        return SecretType(_read(self.template)["type"]) if self.template else SecretType.OPAQUE

    def data_keys(self, key: str) -> tuple[str, ...]:
        """The data keys it writes for a target of data key ``key`` (not the ``.previous``
        ones of an untemplated shape)."""
        if self.template:
            return tuple(sorted(_read(self.template)["data"]))
        return self.fields or (key,)

    def render(
        self, key: str, current: bytes, previous: bytes | None, facts: Inputs
    ) -> dict[str, bytes]:
        """The data of the Secret for a target of data key ``key``, checked; ``facts``:
        version, fingerprint, namespace, name."""
        if self.refusal:
            raise TemplateError(self.refusal)
        if not self.template:
            return self._untemplated(key, current, previous)
        data = {
            key: Renderer(inputs(current, previous, facts), MAX_OUTPUT).render(parts).encode()
            for key, parts in _parsed(self.template)
        }
        check(self.secret_type, data)
        return data

    def preview(self, key: str) -> tuple[tuple[str, ...], str]:
        """The data keys the shape writes for a target of data key ``key``, and why it
        cannot be written ("" if it can), known without a value: a template is parsed
        and rendered with placeholders, so ``plan`` catches what a render would refuse."""
        fields = self.fields
        placeholder = key_fields.encode(dict.fromkeys(fields, b"x")) if fields else b"x"
        try:
            data = self.render(key, placeholder, placeholder, Inputs(None, version=1))
        except TemplateError as exc:
            return self.data_keys(key), str(exc)
        return tuple(data), ""

    def _untemplated(self, key: str, current: bytes, previous: bytes | None) -> dict[str, bytes]:
        now = key_fields.parse(current)
        before = key_fields.parse(previous) if previous is not None else None
        if now is None:
            data = {key: current}
            if previous is not None and before is None:
                data[key + PREVIOUS_SUFFIX] = previous
            return data
        data = dict(now)
        for name, value in (before or {}).items():
            if name in now:
                data[name + PREVIOUS_SUFFIX] = value
        return data


PLAIN = Shape()  # one value under "api-key": the default (frozen, so shared)


def inputs(current: bytes, previous: bytes | None, facts: Inputs) -> Inputs:
    """A template's inputs from a version's plaintext (and the previous version's)."""
    now = key_fields.parse(current)
    before = key_fields.parse(previous) if previous is not None else None
    binary: set[str] = set()

    def text(value: bytes, name: str) -> str:
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            binary.add(name)
            return ""

    if now is None:
        value = text(current, "")
        old = text(previous, "") if previous is not None and before is None else None
        return replace(facts, value=value, previous=old, binary=frozenset(binary))
    texts = {name: text(value, name) for name, value in now.items()}
    old_fields = None if before is None else {n: text(v, n) for n, v in before.items()}
    return replace(
        facts, value=None, fields=texts, previous_fields=old_fields, binary=frozenset(binary)
    )


def check(secret_type: SecretType, data: dict[str, bytes]) -> None:
    """The rendered data fits a Secret of ``secret_type`` (before any write)."""
    if sum(len(k) + len(v) for k, v in data.items()) > MAX_OUTPUT:
        raise TemplateError(f"the rendered Secret is over {MAX_OUTPUT} bytes")
    for key in data:
        if not names.is_data_key(key):
            raise TemplateError(f"{key[:64]!r} is not a Secret data key ([-._a-zA-Z0-9]+)")
        meant = TYPE_KEYS.get(key, secret_type)
        if meant != secret_type:
            raise TemplateError(f"data key {key!r} is for another Secret type than {secret_type}")
    missing = [key for key in REQUIRED_KEYS.get(secret_type, ()) if key not in data]
    if missing:
        raise TemplateError(f"a {secret_type} Secret needs the data keys {', '.join(missing)}")
    if secret_type is SecretType.DOCKER_CONFIG_JSON:
        try:
            config = json.loads(data[".dockerconfigjson"])
        except ValueError:
            config = None
        if not isinstance(config, dict) or not isinstance(config.get("auths"), dict):
            raise TemplateError(".dockerconfigjson does not render to JSON with an auths map")


@lru_cache(maxsize=256)
def _read(template: str) -> dict[str, Any]:
    """A template's canonical JSON, read once per distinct template (in_sync asks its
    type on every reconcile of every target)."""
    read: dict[str, Any] = json.loads(template)
    return read


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


@lru_cache(maxsize=256)
def _parsed(template: str) -> tuple[tuple[str, tuple[Part, ...]], ...]:
    """A template's data keys, parsed (once per distinct template, not per render)."""
    data: dict[str, str] = _read(template)["data"]
    return tuple((key, parse(data[key], key, FUNCTION_NAMES)) for key in sorted(data))


def shape_for(projection: Projection, policy: KeyPolicySpec, fields: tuple[str, ...]) -> Shape:
    """The shape a projection asks for, as the policy lets it: a ``templateRef`` the
    policy does not have, or a type outside its ``secretTypes``, is a refusal."""
    if projection.template_ref is not None:
        template = policy.templates.get(projection.template_ref)
        if template is None:
            return Shape(refusal=f"the policy has no template {projection.template_ref!r}")
        shape = Shape.of(template, projection.template_ref)
    elif projection.template is not None:
        shape = Shape.of(projection.template)
    else:
        return Shape(fields=fields)
    if shape.secret_type not in policy.secret_types:
        allowed = ", ".join(policy.secret_types)
        return replace(shape, refusal=f"the policy allows the Secret types {allowed} only")
    return shape
