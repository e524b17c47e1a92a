"""#24 on the real apiserver: keys with fields, projection templates, Secret types.

Each test applies what a user would (the CRDs installed, the operator running) and
reads back the Secrets a workload would mount."""

from __future__ import annotations

import base64
import json
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from devtools.controlplane import ControlPlane
from devtools.kk import Cluster, actions, apikey, condition, keypolicy, unique
from devtools.operator import Operator, wait_for
from kubernetes.client.rest import ApiException

from tests.integration.conftest import Leaks
from tests.integration.test_seal_cli import kubectl

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.cluster


def data(kk: Cluster, namespace: str, name: str) -> dict[str, bytes]:
    secret = kk.secret(namespace, name)
    return {k: base64.b64decode(v) for k, v in ((secret.data if secret else None) or {}).items()}


def shaped(kk: Cluster, namespace: str, name: str, *keys: str) -> dict[str, bytes]:
    found: dict[str, bytes] = wait_for(
        lambda: (d := data(kk, namespace, name)) and all(k in d for k in keys) and d,
        what=f"{namespace}/{name} with {keys}",
    )
    return found


def rotate(kk: Cluster, namespace: str, name: str) -> None:
    time.sleep(0.01)  # a request is newer than the version it asks to replace
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    kk.patch_key(
        namespace, name, {"metadata": {"annotations": {"keykeeper.dev/rotate-requested-at": stamp}}}
    )


CONFIG = '{"keys": {{ list .value .previous | toJson }}}'


def test_templates_shape_a_value_and_a_rotation_honours_previous(
    operator: Operator, kk: Cluster, leaks: Leaks
) -> None:
    home = kk.namespace("home")
    policy = unique("pol")
    env = {"data": {".env": "STRIPE_API_KEY={{ .value }}\nKEY_VERSION={{ .version }}\n"}}
    kk.create(keypolicy(policy, templates={"env-file": env}, rotation={"gracePeriod": "1h"}))
    projections = [
        {"namespace": home, "secretName": "env", "templateRef": "env-file"},
        {"namespace": home, "secretName": "cfg", "template": {"data": {"config.json": CONFIG}}},
        {
            "namespace": home,
            "secretName": "url",
            "template": {"data": {"DATABASE_URL": "postgres://app:{{ .value | urlquery }}@db/app"}},
        },
    ]
    kk.create(apikey(home, "stripe", policy, projections=projections))
    first = shaped(kk, home, "cfg", "config.json")
    (value,) = json.loads(first["config.json"])["keys"]
    leaks.add(value.encode())
    assert (
        shaped(kk, home, "env", ".env")[".env"]
        == f"STRIPE_API_KEY={value}\nKEY_VERSION=1\n".encode()
    )
    assert shaped(kk, home, "url", "DATABASE_URL")["DATABASE_URL"].startswith(b"postgres://app:")
    status = wait_for(lambda: (k := kk.key(home, "stripe")) and k.get("status"), what="status")
    shown = {p["secretName"]: p.get("template", "") for p in status.get("projections", [])}
    assert re.fullmatch(r"env-file@[0-9a-f]{12}", shown["env"]), shown
    assert re.fullmatch(r"inline@[0-9a-f]{12}", shown["cfg"]), shown

    rotate(kk, home, "stripe")
    both = wait_for(
        lambda: len(keys := json.loads(data(kk, home, "cfg")["config.json"])["keys"]) == 2 and keys,
        what="the config with current and previous",
    )
    leaks.add(both[0].encode())
    assert both[1] == value and both[0] != value  # current first, then the previous
    assert wait_for(
        lambda: data(kk, home, "env")[".env"].endswith(b"KEY_VERSION=2\n"), what="env v2"
    )
    assert both[0].encode() in data(kk, home, "env")[".env"]


def test_basic_auth_with_two_generated_fields(
    operator: Operator, kk: Cluster, leaks: Leaks
) -> None:
    home = kk.namespace("home")
    policy = unique("pol")
    kk.create(keypolicy(policy))
    template = {
        "type": "kubernetes.io/basic-auth",
        "data": {"username": "svc-{{ .fields.username }}", "password": "{{ .fields.password }}"},
    }
    kk.create(
        apikey(
            home,
            "db",
            policy,
            source={"generate": {"fields": {"username": {}, "password": {"length": 64}}}},
            projections=[
                {"namespace": home, "secretName": "db-auth", "template": template},
                {"namespace": home, "secretName": "db-fields"},
            ],
        )
    )
    auth = shaped(kk, home, "db-auth", "username", "password")
    fields = shaped(kk, home, "db-fields", "username", "password")
    leaks.add(fields["username"])
    leaks.add(fields["password"])
    assert kk.secret(home, "db-auth").type == "kubernetes.io/basic-auth"  # type: ignore[union-attr]
    assert auth == {"username": b"svc-" + fields["username"], "password": fields["password"]}
    assert len(fields["username"]) == 40 and len(fields["password"]) == 64  # policy's, override
    key = kk.key(home, "db")
    assert key is not None and key["status"]["versions"][0]["fields"] == ["password", "username"]

    rotate(kk, home, "db")  # both fields at once, never one alone
    rotated = wait_for(
        lambda: "password.previous" in (d := data(kk, home, "db-fields")) and d, what="rotated"
    )
    leaks.add(rotated["password"])
    assert rotated["username.previous"] == fields["username"]
    assert rotated["password.previous"] == fields["password"]
    assert rotated["username"] != fields["username"] and rotated["password"] != fields["password"]


def test_an_imported_two_field_key(operator: Operator, kk: Cluster, leaks: Leaks) -> None:
    home = kk.namespace("home")
    policy = unique("pol")
    kk.create(keypolicy(policy, value={"minLength": 8}))
    user, secret = b"AKIAEXAMPLE0001", b"wJalrXUtnFEMI/K7MDENG/bPxRfiCY"
    leaks.add(secret)
    kk.put_secret(
        home, "aws", {"access-key-id": user, "secret-access-key": secret}, importable_by="aws"
    )
    source = {"secretRef": {"name": "aws", "keys": ["access-key-id", "secret-access-key"]}}
    template = {
        "data": {
            "credentials": "[default]\naws_access_key_id = {{ .fields.access-key-id }}\n"
            "aws_secret_access_key = {{ .fields.secret-access-key }}\n"
        }
    }
    kk.create(
        apikey(
            home,
            "aws",
            policy,
            source=source,
            projections=[
                {"namespace": home, "secretName": "aws-fields"},
                {"namespace": home, "secretName": "aws-file", "template": template},
            ],
        )
    )
    fields = shaped(kk, home, "aws-fields", "access-key-id", "secret-access-key")
    assert fields == {"access-key-id": user, "secret-access-key": secret}
    text = shaped(kk, home, "aws-file", "credentials")["credentials"].decode()
    assert f"aws_secret_access_key = {secret.decode()}\n" in text


def test_a_template_error_keeps_the_last_good_copy_and_says_why_without_a_value(
    operator: Operator, kk: Cluster, leaks: Leaks
) -> None:
    home = kk.namespace("home")
    policy = unique("pol")
    kk.create(keypolicy(policy))
    good = {"data": {"token": "Bearer {{ .value }}"}}
    kk.create(apikey(home, "t", policy, projections=[{"namespace": home, "template": good}]))
    before = shaped(kk, home, "t", "token")
    leaks.add(before["token"][len(b"Bearer ") :])
    # a value stuffed into the template's own text must not come back in the error either
    broken = {"data": {"token": "{{ .value | exec }}", "other": "{{ .fields.x }}"}}
    kk.patch_key(home, "t", {"spec": {"projections": [{"namespace": home, "template": broken}]}})
    ready = wait_for(
        lambda: (
            (c := condition(kk.key(home, "t"), "Ready")) and c["reason"] == "TemplateInvalid" and c
        ),
        what="Ready=False TemplateInvalid",
    )
    assert ready["status"] == "False" and "exec" in ready["message"]
    assert data(kk, home, "t") == before  # the last good projection stays
    events = kk.wait_for_events(home, "t", "TemplateInvalid")
    assert any(e.type == "Warning" for e in events if "TemplateInvalid" in actions(e))

    # a type change: the Secret is made again with the new type, never changed in place
    basic = {
        "type": "kubernetes.io/basic-auth",
        "data": {"username": "app", "password": "{{ .value }}"},
    }
    kk.patch_key(home, "t", {"spec": {"projections": [{"namespace": home, "template": basic}]}})
    wait_for(
        lambda: (s := kk.secret(home, "t")) is not None and s.type == "kubernetes.io/basic-auth",
        what="the Secret made again as basic-auth",
    )
    assert data(kk, home, "t")["password"] == before["token"][len(b"Bearer ") :]


@pytest.mark.parametrize(
    ("template", "refused"),
    [
        ({"data": {f"k{i}": "x" for i in range(10_000)}}, "must have at most 64"),
        ({"data": {"../x": "{{ .value }}"}}, "a data key is"),
        (
            {"type": "kubernetes.io/service-account-token", "data": {"token": "x"}},
            "Unsupported value",
        ),
        ({"data": {"k": "x" * 9000}}, "8192"),
    ],
    ids=["10000-data-keys", "dot-dot-slash", "service-account-token", "long-template"],
)
def test_the_apiserver_refuses_what_the_schema_can(
    operator: Operator, kk: Cluster, template: dict[str, Any], refused: str
) -> None:
    home = kk.namespace("home")
    with pytest.raises(ApiException) as refusal:
        kk.create(
            apikey(
                home, "bad", "any-policy", projections=[{"namespace": home, "template": template}]
            )
        )
    assert refusal.value.status == 422 and refused in refusal.value.body, refusal.value.body


def test_the_shaped_examples_project_what_the_readme_says(
    operator: Operator, kk: Cluster, leaks: Leaks
) -> None:
    """examples/30-shaped.yaml, applied as a new user would (after 00-namespaces.yaml)."""
    for name in ("00-namespaces.yaml", "30-shaped.yaml"):
        for doc in yaml.safe_load_all((REPO / "examples" / name).read_text()):
            try:
                if doc["kind"] == "Secret":
                    kk.core.create_namespaced_secret(doc["metadata"]["namespace"], doc)
                elif doc["kind"] == "Namespace":
                    kk.core.create_namespace(doc)
                else:
                    kk.create(doc)
            except ApiException as exc:
                if exc.status != 409:  # already there (another test applied the namespaces)
                    raise
    env = shaped(kk, "payments-api", "webhook-env", ".env")[".env"].decode()
    value = re.fullmatch(r"WEBHOOK_SECRET=(\S+)\nWEBHOOK_SECRET_VERSION=1\n", env)
    assert value, "the env file"
    leaks.add(value.group(1).encode())
    config = shaped(kk, "payments-api", "webhook-config", "config.json")["config.json"]
    assert json.loads(config) == {"keys": [value.group(1)]}
    auth = shaped(kk, "payments-api", "db-credentials", "username", "password")
    leaks.add(auth["password"])
    assert kk.secret("payments-api", "db-credentials").type == "kubernetes.io/basic-auth"  # type: ignore[union-attr]
    assert re.fullmatch(rb"[A-Za-z0-9]{40}", auth["username"]) and len(auth["password"]) == 64
    assert shaped(kk, "payments", "db", "username", "password") == auth
    credentials = shaped(kk, "payments-api", "aws", "credentials")["credentials"].decode()
    assert "aws_access_key_id = AKIAEXAMPLEEXAMPLE01\n" in credentials


def test_plan_shows_each_targets_shape_and_catches_a_bad_template(
    control_plane: ControlPlane, operator: Operator, kk: Cluster, tmp_path: Path
) -> None:
    """``kubectl keykeeper plan -f`` on a manifest not yet applied: each target's type and
    data keys (never values), and a template the render would refuse, before it is applied."""
    home = kk.namespace("home")
    policy = unique("pol")
    kk.create(keypolicy(policy, secretTypes=["Opaque"]))
    basic = {
        "type": "kubernetes.io/basic-auth",
        "data": {"username": "u", "password": "{{ .value }}"},
    }
    projections = [
        {"namespace": home, "secretName": "cfg", "template": {"data": {"config.json": CONFIG}}},
        {"namespace": home, "secretName": "plain"},
        {
            "namespace": home,
            "secretName": "bad",
            "template": {"data": {"k": "{{ .value | exec }}"}},
        },
        {"namespace": home, "secretName": "basic", "template": basic},
    ]
    manifest = tmp_path / "draft.json"
    manifest.write_text(json.dumps(apikey(home, "draft", policy, projections=projections)))
    admin = control_plane.admin.kubeconfig  # type: ignore[union-attr]
    done = kubectl(control_plane, admin, "keykeeper", "plan", "-f", str(manifest))
    assert done.returncode == 0, done.stderr
    rows = {line.split()[1]: line.split() for line in done.stdout.decode().splitlines()[1:]}
    assert rows["cfg"][2:5] == ["allowed", "Opaque", "config.json"]
    assert rows["plain"][2:5] == ["allowed", "Opaque", "api-key,api-key.previous"]
    assert rows["bad"][2] == "refused" and "exec" in " ".join(rows["bad"])
    assert rows["basic"][2:4] == ["refused", "kubernetes.io/basic-auth"]
    assert "allows the Secret types Opaque only" in " ".join(rows["basic"])
    assert kk.key(home, "draft") is None  # nothing was written
