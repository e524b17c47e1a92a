"""Finding 5 — ``secretRef`` as a confused deputy inside the namespace.

Someone allowed to create ApiKeys but not to read a namespace's Secrets used to lift
any Secret (ServiceAccount tokens, registry credentials) out through keykeeper. An
import now needs the source Secret's consent (annotation naming the key) and type
Opaque; messages never say how long a value is; the audit names the exact Secret.
"""

from __future__ import annotations

import pytest
from devtools.kk import Cluster, apikey, condition, keypolicy, unique
from devtools.operator import Operator, wait_for

from tests.adversarial.tenant import Tenant
from tests.cluster import Leaks

pytestmark = pytest.mark.cluster


def refused(kk: Cluster, namespace: str, name: str, reason: str) -> dict[str, str]:
    ready: dict[str, str] = wait_for(
        lambda: (
            condition(kk.key(namespace, name), "Ready").get("reason") == reason
            and condition(kk.key(namespace, name), "Ready")
        ),
        what=f"{namespace}/{name} {reason}",
    )
    assert ready["status"] == "False"
    return ready


@pytest.mark.parametrize(
    ("secret_type", "importable_by", "why"),
    [
        pytest.param(None, None, "does not consent", id="no-consent"),
        pytest.param(None, "someone-else", "does not consent", id="consent-for-another-key"),
        pytest.param(None, "k-other,kk", "does not consent", id="consent-list-without-it"),
        pytest.param("kubernetes.io/basic-auth", "k", "only Secrets of type Opaque", id="typed"),
    ],
)
def test_an_import_needs_the_source_secrets_consent(
    attacker: Tenant,
    kk: Cluster,
    leaks: Leaks,
    secret_type: str | None,
    importable_by: str | None,
    why: str,
) -> None:
    home = attacker.namespace
    value = b"someone-elses-credential-" + unique("c").encode()
    leaks.add(value)
    data = {"api-key": value, "password": b"x"} if secret_type else {"api-key": value}
    kk.put_secret(home, "src", data, importable_by=importable_by, type_=secret_type)
    policy = unique("pol")
    kk.create(keypolicy(policy))
    attacker.kk.create(
        apikey(
            home,
            "k",
            policy,
            projections=[{"namespace": home, "secretName": "out"}],
            source={"secretRef": {"name": "src", "deleteAfterImport": True}},
        )
    )
    ready = refused(kk, home, "k", "ImportNotPermitted")
    assert why in ready["message"]
    assert kk.secret(home, "out") is None
    assert kk.value(home, "src") == value  # never deleted without consent
    uid = kk.key(home, "k")["metadata"]["uid"]  # type: ignore[index]
    assert kk.secret("keykeeper-system", f"ak-{uid}") is None


def test_errors_do_not_reveal_the_values_length(
    operator: Operator, attacker: Tenant, kk: Cluster, leaks: Leaks
) -> None:
    home = attacker.namespace
    value = b"abcdefghijklm"  # 13 bytes
    leaks.add(value)
    kk.put_secret(home, "src", {"api-key": value}, importable_by="k")
    policy = unique("pol")
    kk.create(keypolicy(policy, value={"minLength": 20}))
    attacker.kk.create(apikey(home, "k", policy, source={"secretRef": {"name": "src"}}))
    ready = refused(kk, home, "k", "InvalidValue")
    assert "13" not in ready["message"]
    found = kk.wait_for_events(home, "k", "InvalidValue")
    assert "13" not in " ".join(str(e.message) for e in found)


def test_the_audit_names_the_imported_secret_and_delete_is_exact(
    operator: Operator, attacker: Tenant, kk: Cluster, leaks: Leaks
) -> None:
    home = attacker.namespace
    value = b"sk_live_" + unique("i").encode() * 3
    leaks.add(value)
    kk.put_secret(home, "src", {"api-key": value}, importable_by="k")
    src_uid = kk.secret(home, "src").metadata.uid  # type: ignore[union-attr]
    policy = unique("pol")
    kk.create(keypolicy(policy))
    attacker.kk.create(
        apikey(
            home,
            "k",
            policy,
            projections=[{"namespace": home, "secretName": "out"}],
            source={"secretRef": {"name": "src", "deleteAfterImport": True}},
        )
    )
    assert wait_for(lambda: kk.value(home, "out")) == value
    wait_for(lambda: kk.secret(home, "src") is None, what="source deleted after import")
    records = [r for r in operator.audit_records() if r["namespace"] == home]
    created = next(r for r in records if r["action"] == "Created")
    assert f"{home}/src" in created["detail"] and src_uid in created["detail"]
    deleted = next(r for r in records if r["action"] == "SourceDeleted")
    assert src_uid in deleted["detail"]
