"""#24 — a tenant's projection templates, played by a tenant with namespace rights only.

A template is code the tenant writes and the operator runs with every key in reach.
Each attack here is refused (at admission, or as ``Ready=False TemplateInvalid`` on the
one target), the key's other targets and the tenant's other keys keep working, a type
the policy does not allow is never written, and no value reaches a log, an Event, a
status or the audit log (the ``leaks`` fixture scans them all)."""

from __future__ import annotations

import base64
import json
import secrets
from typing import Any

import pytest
from devtools.kk import Cluster, apikey, condition, keypolicy, unique
from devtools.operator import wait_for

from tests.adversarial.tenant import Tenant
from tests.cluster import Leaks

pytestmark = pytest.mark.cluster

REFUSED_AT_RENDER = [
    "{{ .__class__ }}",
    "{{ .value.__class__.__mro__ }}",
    "{{ .Env.HOME }}",
    '{{ exec "id" }}',
    '{{ template "other" . }}',
    '{{ define "x" }}{{ .value }}{{ end }}',
    '{{ readFile "/var/run/secrets/kubernetes.io/serviceaccount/token" }}',
    # with the 60 KB value below: 51 MB and 30 MB if rendered whole; refused at 256 KiB
    "{{ list .value .value .value .value | toJson | b64enc | b64enc }}" * 120,
    "{{ .value | b64enc | b64enc | b64enc | b64enc | b64enc | b64enc | b64enc }}" * 60,
]
BIG = 60_000  # a value the policy allows (maxLength 65536), imported by the tenant


def _data(kk: Cluster, namespace: str, name: str) -> dict[str, bytes]:
    secret = kk.secret(namespace, name)
    return {k: base64.b64decode(v) for k, v in ((secret.data if secret else None) or {}).items()}


def _ready(kk: Cluster, namespace: str, name: str) -> dict[str, Any]:
    found: dict[str, Any] = condition(kk.key(namespace, name), "Ready")
    return found


@pytest.mark.parametrize("template", REFUSED_AT_RENDER, ids=range(len(REFUSED_AT_RENDER)))
def test_a_hostile_template_is_refused_and_breaks_nothing_else(
    attacker: Tenant, kk: Cluster, leaks: Leaks, template: str
) -> None:
    home = attacker.namespace
    policy = unique("pol")
    kk.create(keypolicy(policy, sources={"names": [home]}, value={"maxLength": 65536}))
    attacker.kk.create(apikey(home, "neighbour", policy, projections=[{"namespace": home}]))
    projections = [
        {"namespace": home, "secretName": "good", "template": {"data": {"t": "{{ .value }}"}}},
        {"namespace": home, "secretName": "evil", "template": {"data": {"t": template}}},
    ]
    big = secrets.token_urlsafe(BIG)[:BIG].encode()
    leaks.add(big)
    attacker.kk.put_secret(home, "big", {"api-key": big}, importable_by="k")
    source = {"secretRef": {"name": "big"}}
    attacker.kk.create(apikey(home, "k", policy, projections=projections, source=source))
    value = wait_for(lambda: _data(kk, home, "good").get("t"), what="the good target")
    assert value == big
    leaks.add(wait_for(lambda: kk.value(home, "neighbour"), what="the tenant's other key"))
    ready = wait_for(
        lambda: (r := _ready(kk, home, "k")).get("reason") == "TemplateInvalid" and r,
        what="Ready=False TemplateInvalid",
    )
    assert ready["status"] == "False"
    assert kk.secret(home, "evil") is None, "nothing is written for a refused template"
    assert _data(kk, home, "good") == {"t": value}


@pytest.mark.parametrize(
    ("template", "refused"),
    [
        ({"data": {f"k{i}": "x" for i in range(10_000)}}, "must have at most 64"),
        ({"data": {"../x": "{{ .value }}"}}, "a data key is"),
        ({"data": {"%2e%2e%2fx": "{{ .value }}"}}, "a data key is"),
        ({"type": "kubernetes.io/service-account-token", "data": {"token": "x"}}, "Unsupported"),
        ({"type": "kubernetes.io/tls", "data": {"tls.key": "x"}}, "Unsupported"),
    ],
    ids=["10000-data-keys", "dot-dot-slash", "encoded-separators", "sa-token", "tls"],
)
def test_what_the_schema_can_refuse_never_reaches_the_operator(
    attacker: Tenant, template: dict[str, Any], refused: str
) -> None:
    home = attacker.namespace
    body = apikey(home, "k", "any", projections=[{"namespace": home, "template": template}])
    assert refused in attacker.rejected(body)


def test_a_type_the_policy_does_not_allow_or_a_foreign_key_is_never_written(
    attacker: Tenant, kk: Cluster, leaks: Leaks
) -> None:
    home = attacker.namespace
    policy = unique("pol")
    kk.create(keypolicy(policy, sources={"names": [home]}, secretTypes=["Opaque"]))
    registry = json.dumps({"auths": {"evil.example": {"auth": "{{ .value | b64enc }}"}}})
    projections = [
        {"namespace": home, "secretName": "ok"},
        {
            "namespace": home,
            "secretName": "pull",  # a registry credential the policy does not allow
            "template": {
                "type": "kubernetes.io/dockerconfigjson",
                "data": {".dockerconfigjson": registry},
            },
        },
        {  # the same smuggled into an Opaque: a key that means another type
            "namespace": home,
            "secretName": "smuggled",
            "template": {"data": {".dockerconfigjson": registry}},
        },
    ]
    attacker.kk.create(apikey(home, "k", policy, projections=projections))
    leaks.add(wait_for(lambda: kk.value(home, "ok"), what="the allowed target"))
    wait_for(lambda: _ready(kk, home, "k").get("reason") == "TemplateInvalid", what="refused")
    assert kk.secret(home, "pull") is None and kk.secret(home, "smuggled") is None
    states = {p["secretName"]: p for p in kk.key(home, "k")["status"]["projections"]}  # type: ignore[index]
    assert states["pull"]["state"] == "Failed" and "Opaque only" in states["pull"]["message"]
    assert "another Secret type" in states["smuggled"]["message"]


def test_a_template_cannot_read_another_keys_value_or_the_policys(
    attacker: Tenant, kk: Cluster, leaks: Leaks
) -> None:
    """The inputs are this key's own: another key's value is not an input, whatever the
    template names (its name, its namespace, a field of the same name)."""
    home = attacker.namespace
    policy = unique("pol")
    kk.create(keypolicy(policy, sources={"names": [home]}))
    attacker.kk.create(apikey(home, "victim", policy, projections=[{"namespace": home}]))
    victim = wait_for(lambda: kk.value(home, "victim"), what="the victim's key")
    leaks.add(victim)
    probes = {
        "a": "{{ .fields.victim }}",
        "b": "{{ .previousFields.victim | default .name }}",
        "c": '{{ .namespace }}/{{ .name }}/{{ default "" .previous }}',
    }
    attacker.kk.create(
        apikey(
            home, "probe", policy, projections=[{"namespace": home, "template": {"data": probes}}]
        )
    )
    wait_for(lambda: _ready(kk, home, "probe").get("reason") == "TemplateInvalid", what="refused")
    assert kk.secret(home, "probe") is None  # .fields.victim: the key has no such field
    probes.pop("a")
    attacker.kk.patch_key(
        home,
        "probe",
        {"spec": {"projections": [{"namespace": home, "template": {"data": probes}}]}},
    )
    shown = wait_for(lambda: _data(kk, home, "probe") or None, what="the probe rendered")
    assert victim not in b"".join(shown.values())
    assert shown == {"b": b"probe", "c": f"{home}/probe/".encode()}
