"""Tables of the template engine, a key's fields and the Secret types (#24): what a
template renders, and every way a tenant's template reaches beyond its key refused,
with no value in any message."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from keykeeper.api.models import Projection, parse_apikey_spec, parse_policy_spec
from keykeeper.errors import InvalidValue, SpecError, TemplateError
from keykeeper.shaping import fields
from keykeeper.shaping.evaluate import Inputs
from keykeeper.shaping.shapes import Shape, shape_for

SECRET = "s3cr3t-VALUE/+&"
OLD = "old-VALUE"
FACTS = Inputs(None, version=7, fingerprint="fp", namespace="team", name="stripe")
POLICY = parse_policy_spec({"sourceNamespaces": {"names": ["team"]}})


def projection(template: dict[str, Any] | None = None, **more: Any) -> Projection:
    spec = {"namespace": "team", **more}
    if template is not None:
        spec["template"] = template
    parsed = parse_apikey_spec({"policy": "p", "source": {"generate": {}}, "projections": [spec]})
    return parsed.projections[0]


def render(text: str, previous: str | None = None, kind: str = "Opaque") -> str:
    shape = shape_for(projection({"type": kind, "data": {"k": text}}), POLICY, ())
    old = previous.encode() if previous is not None else None
    return shape.render("api-key", SECRET.encode(), old, FACTS)["k"].decode()


@pytest.mark.parametrize(
    ("text", "previous", "expected"),
    [
        ("{{ .value }}", None, SECRET),
        ("{{.value}}", None, SECRET),
        ("a {{- ' ' -}} b", None, None),  # a ' is no string: refused (below), not guessed
        ("x  {{- .version -}}  y", None, "x7y"),
        ("{{ .value | upper | lower }}", None, SECRET.lower()),
        ("{{ .value | b64enc }}", None, base64.b64encode(SECRET.encode()).decode()),
        ("{{ .value | urlquery }}", None, "s3cr3t-VALUE%2F%2B%26"),
        ("{{ .value | quote }}", None, json.dumps(SECRET)),
        ('{{ "  pad  " | trim }}', None, "pad"),
        ("{{ list .value .previous | toJson }}", None, json.dumps([SECRET], separators=(",", ":"))),
        (
            "{{ list .value .previous | toJson }}",
            OLD,
            json.dumps([SECRET, OLD], separators=(",", ":")),
        ),
        ('{{ join "," (list .value .previous) }}', OLD, f"{SECRET},{OLD}"),
        ('{{ .previous | default "none" }}', None, "none"),
        ('{{ default "none" .previous }}', OLD, OLD),
        ("{{ .previous }}", None, ""),
        (
            "{{ .namespace }}/{{ .name }} v{{ .version }} {{ .fingerprint }}",
            None,
            "team/stripe v7 fp",
        ),
        ("{{/* a comment */}}ok", None, "ok"),
        ("{{ `raw {{ \\n` }}", None, "raw {{ \\n"),
        ('{{ "tab\\tnew\\n" }}', None, "tab\tnew\n"),
        ("{{ 42 }}", None, "42"),
    ],
)
def test_a_template_renders_what_helm_users_expect(
    text: str, previous: str | None, expected: str | None
) -> None:
    if expected is None:
        with pytest.raises(TemplateError):
            render(text, previous)
        return
    assert render(text, previous) == expected


ATTACKS = [
    ("{{ .Env }}", "is not an input"),
    ("{{ .Env.HOME }}", "is not an input"),
    ("{{ .__class__ }}", "is not an input"),
    ("{{ .value.__class__.__mro__ }}", "is not an input"),
    ('{{ exec "id" }}', "is not one of the template functions"),
    ('{{ template "x" . }}', "is not one of the template functions"),
    ('{{ define "x" }}{{ .value }}{{ end }}', "is not one of the template functions"),
    ("{{ range .fields }}{{ . }}{{ end }}", "is not one of the template functions"),
    ("{{ if .value }}x{{ end }}", "is not one of the template functions"),
    ("{{ $x := .value }}", "unexpected"),
    ('{{ printf "%s" .value }}', "is not one of the template functions"),
    ('{{ env "HOME" }}', "is not one of the template functions"),
    ('{{ readFile "/etc/passwd" }}', "is not one of the template functions"),
    ("{{ . }}", "is not an input"),
    ("{{ .value", "is not closed"),
    ("{{ (((((((((.value))))))))) }}", "nest deeper"),
    ("{{ .value | }}", "ends where a value is expected"),
    ("{{ .fields }}", "a list or a map"),
    ("{{ list .value }}", "a list or a map"),
    ("{{ .fields.password }}", "no field 'password'"),
    ('{{ "\\x41" }}', "escape"),
]


@pytest.mark.parametrize(("text", "problem"), ATTACKS, ids=[a[0] for a in ATTACKS])
def test_a_template_reaching_beyond_its_key_is_refused_without_a_value(
    text: str, problem: str
) -> None:
    with pytest.raises(TemplateError) as refused:
        render(text, OLD)
    message = str(refused.value)
    assert problem in message, message
    assert SECRET not in message and OLD not in message


def test_output_is_bounded_however_often_a_value_is_repeated() -> None:
    """8 KiB of template doubling a 60 KB value cannot make the operator build 10 MB."""
    text = "{{ list .value .value .value .value | toJson | b64enc | b64enc }}" * 120
    shape = shape_for(projection({"data": {"k": text}}), POLICY, ())
    with pytest.raises(TemplateError, match="more than 262144 characters") as refused:
        shape.render("api-key", b"v" * 60_000, None, FACTS)
    assert "vvvv" not in str(refused.value)


@pytest.mark.parametrize(
    ("kind", "data", "problem"),
    [
        ("Opaque", {".dockerconfigjson": "{}"}, "for another Secret type"),
        ("Opaque", {".dockercfg": "{}"}, "for another Secret type"),
        ("kubernetes.io/basic-auth", {"username": "u"}, "needs the data keys password"),
        ("kubernetes.io/dockerconfigjson", {".dockerconfigjson": "{{ .value }}"}, "auths map"),
        ("kubernetes.io/ssh-auth", {"key": "{{ .value }}"}, "ssh-privatekey"),
    ],
)
def test_each_type_gets_the_keys_it_needs_and_no_other_types(
    kind: str, data: dict[str, str], problem: str
) -> None:
    shape = shape_for(projection({"type": kind, "data": data}), POLICY, ())
    with pytest.raises(TemplateError, match=problem) as refused:
        shape.render("api-key", SECRET.encode(), None, FACTS)
    assert SECRET not in str(refused.value)


def test_a_registry_credential_renders() -> None:
    config = '{"auths": {"registry.example": {"auth": {{ .value | b64enc | quote }}}}}'
    shape = shape_for(
        projection(
            {"type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": config}}
        ),
        POLICY,
        (),
    )
    out = json.loads(shape.render("api-key", SECRET.encode(), None, FACTS)[".dockerconfigjson"])
    assert out["auths"]["registry.example"]["auth"]


@pytest.mark.parametrize(
    "kind",
    ["kubernetes.io/service-account-token", "kubernetes.io/tls", "bootstrap.kubernetes.io/token"],
)
def test_no_model_admits_a_type_outside_the_allow_list(kind: str) -> None:
    with pytest.raises(SpecError):
        projection({"type": kind, "data": {"k": "x"}})
    with pytest.raises(SpecError):
        parse_policy_spec({"sourceNamespaces": {}, "secretTypes": [kind]})


def test_the_policy_narrows_types_and_names_its_templates() -> None:
    narrow = parse_policy_spec(
        {
            "sourceNamespaces": {},
            "secretTypes": ["Opaque"],
            "templates": {"env": {"data": {".env": "K={{ .value }}"}}},
        }
    )
    basic = projection(
        {"type": "kubernetes.io/basic-auth", "data": {"username": "u", "password": "p"}}
    )
    with pytest.raises(TemplateError, match="allows the Secret types Opaque only"):
        shape_for(basic, narrow, ()).render("api-key", b"v", None, FACTS)
    with pytest.raises(TemplateError, match="no template 'nope'"):
        shape_for(projection(templateRef="nope"), narrow, ()).render("api-key", b"v", None, FACTS)
    env = shape_for(projection(templateRef="env"), narrow, ())
    assert env.render("api-key", b"v", None, FACTS) == {".env": b"K=v"}
    assert env.label.startswith("env@")


def test_fields_are_one_plaintext_and_project_one_data_key_each() -> None:
    now = fields.encode({"username": b"u1", "password": b"p1"})
    old = fields.encode({"username": b"u0", "password": b"p0"})
    assert fields.decode(now, ("password", "username")) == {"username": b"u1", "password": b"p1"}
    out = Shape(fields=("password", "username")).render("api-key", now, old, FACTS)
    assert out == {
        "password": b"p1",
        "username": b"u1",
        "password.previous": b"p0",
        "username.previous": b"u0",
    }
    one = Shape().render("api-key", b"v1", b"v0", FACTS)
    assert one == {"api-key": b"v1", "api-key.previous": b"v0"}


@pytest.mark.parametrize(
    "bad",
    [{}, {"a.previous": b"x"}, {"../x": b"x"}, {"x": b""}, {f"f{i}": b"x" for i in range(17)}],
    ids=["none", "previous-suffix", "dot-dot-slash", "empty", "17-fields"],
)
def test_field_names_and_counts_are_held_to_the_rules(bad: dict[str, bytes]) -> None:
    with pytest.raises(InvalidValue):
        fields.encode(bad)


def test_binary_values_are_refused_by_templates_not_by_untemplated_shapes() -> None:
    shape = shape_for(projection({"data": {"k": "{{ .value }}"}}), POLICY, ())
    with pytest.raises(TemplateError, match="not UTF-8"):
        shape.render("api-key", b"\xff\xfe", None, FACTS)
    assert Shape().render("api-key", b"\xff\xfe", None, FACTS) == {"api-key": b"\xff\xfe"}


def test_a_preview_names_data_keys_and_problems_without_a_value() -> None:
    """What ``kubectl keykeeper plan`` shows per target, made without opening anything."""
    good = shape_for(projection({"data": {"b": "{{ .value }}", "a": "x"}}), POLICY, ())
    assert good.preview("api-key") == (("a", "b"), "")
    assert Shape().preview("token") == (("token", "token.previous"), "")
    two = Shape(fields=("password", "username"))
    assert two.preview("api-key")[0] == (
        "password",
        "username",
        "password.previous",
        "username.previous",
    )
    bad = shape_for(projection({"data": {"k": "{{ .fields.nope }}"}}), POLICY, ())
    keys, problem = bad.preview("api-key")
    assert keys == ("k",) and "no field 'nope'" in problem
