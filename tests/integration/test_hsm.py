"""A KeyPolicy on the PKCS#11 provider (a real SoftHSM2 token), end to end: the
credentials come from a Secret, every key gets its own KEK on the token, and erasure
destroys that KEK object."""

from __future__ import annotations

import pkcs11
import pytest
from devtools.kk import Cluster, apikey, condition, hsm_policy, keypolicy, unique
from devtools.operator import Operator, wait_for
from devtools.softhsm import Token
from pkcs11 import Attribute
from pkcs11 import exceptions as p11err

from tests.integration.conftest import Leaks

pytestmark = pytest.mark.cluster


def labels_on_token(token: Token, prefix: str) -> set[str]:
    slot_token = pkcs11.lib(token.module).get_token(token_label=token.label)
    try:
        session = slot_token.open(user_pin=token.pin)
    except p11err.UserAlreadyLoggedIn:
        session = slot_token.open()
    with session:
        return {
            str(o[Attribute.LABEL])
            for o in session.get_objects()
            if str(o[Attribute.LABEL]).startswith(prefix)
        }


def test_per_key_kek_on_the_hsm_is_destroyed_by_erasure(
    operator: Operator, kk: Cluster, softhsm_token: Token, leaks: Leaks
) -> None:
    hsm = hsm_policy(kk, softhsm_token, retention={"revokedFor": "3s"})
    policy, label = hsm.name, hsm.kek_label
    home = kk.namespace("home")
    kk.create(apikey(home, "k", policy, projections=[{"namespace": home}]))
    leaks.add(wait_for(lambda: kk.value(home, "k"), what="projected through the HSM"))
    body = kk.key(home, "k")
    uid = body["metadata"]["uid"]  # type: ignore[index]
    kek = body["status"]["versions"][0]["kmsKeyId"]  # type: ignore[index]
    assert kek.startswith(f"{label}/{uid}#")
    assert labels_on_token(softhsm_token, label) == {f"{label}/{uid}"}
    kk.patch_key(home, "k", {"spec": {"revoked": True}})
    wait_for(
        lambda: (kk.key(home, "k") or {}).get("status", {}).get("phase") == "Deleted",
        timeout=30,
        what="erased",
    )
    assert labels_on_token(softhsm_token, label) == set()
    erased = [r for r in operator.audit_records() if r["uid"] == uid and r["action"] == "Erased"]
    assert any(kek in r["detail"] for r in erased)


def test_deleting_a_key_destroys_its_kek_too(
    operator: Operator, kk: Cluster, softhsm_token: Token, leaks: Leaks
) -> None:
    hsm = hsm_policy(kk, softhsm_token)
    policy, label = hsm.name, hsm.kek_label
    home = kk.namespace("home")
    kk.create(apikey(home, "k", policy, projections=[{"namespace": home}]))
    leaks.add(wait_for(lambda: kk.value(home, "k"), what="projected"))
    uid = kk.key(home, "k")["metadata"]["uid"]  # type: ignore[index]
    assert labels_on_token(softhsm_token, label) == {f"{label}/{uid}"}
    kk.delete_key(home, "k")
    wait_for(lambda: kk.key(home, "k") is None, what="deleted")
    assert labels_on_token(softhsm_token, label) == set()


def test_a_wrong_pin_is_a_clear_condition(
    operator: Operator, kk: Cluster, softhsm_token: Token
) -> None:
    pin_secret = unique("bad-pin")
    kk.put_secret("keykeeper-system", pin_secret, {"pin": b"not-the-pin"})
    policy = unique("hsm")
    kk.create(
        keypolicy(
            policy,
            kms={
                "provider": "pkcs11",
                "keyRef": "kek-wrong-pin",
                "credentialsSecretRef": {"name": pin_secret},
                "options": {
                    "module": softhsm_token.module,
                    "token": softhsm_token.spare_label,
                    "create": "true",
                    "per-key": "true",
                },
            },
        )
    )
    ready = wait_for(
        lambda: (
            condition(kk.policy(policy), "Ready").get("reason") == "InvalidProviderConfig"
            and condition(kk.policy(policy), "Ready")
        ),
        what="policy not Ready",
    )
    assert "PIN was refused" in ready["message"]
    assert "not-the-pin" not in ready["message"]
