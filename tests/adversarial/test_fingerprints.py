"""Finding K15 — fingerprints as an equality oracle across keys.

Every fingerprint was one HMAC under one key for the whole cluster, so two ApiKeys
holding the same value showed the same fingerprint in their status, their Events and
the audit stream. A tenant holding a guess could import it into a key of its own and
compare its fingerprint with a victim's in the audit stream a log shipper collects.
Now what is shown is keyed by the ApiKey's uid too: within one key as comparable as
before (the same version shows the same fingerprint everywhere), across keys never.
"""

from __future__ import annotations

import re

import pytest
from devtools.kk import Cluster, apikey, keypolicy, unique
from devtools.operator import Operator, wait_for

from tests.adversarial.tenant import Tenant
from tests.cluster import Leaks

pytestmark = pytest.mark.cluster


def _fingerprints(kk: Cluster, namespace: str) -> list[str]:
    versions = wait_for(
        lambda: ((kk.key(namespace, "k") or {}).get("status") or {}).get("versions"),
        what="a stored version",
    )
    return [v["fingerprint"] for v in versions]


def test_the_same_value_in_two_keys_shows_two_fingerprints(
    operator: Operator, attacker: Tenant, kk: Cluster, leaks: Leaks
) -> None:
    victim = kk.namespace("victim")
    home = attacker.namespace
    policy = unique("pol")
    kk.create(keypolicy(policy, sources={"names": [victim, home]}))
    guess = b"sk_live_" + unique("guess").encode() * 2
    leaks.add(guess)
    for namespace, who in ((victim, kk), (home, attacker.kk)):
        who.put_secret(namespace, "src", {"api-key": guess}, importable_by="k")
        who.create(
            apikey(
                namespace,
                "k",
                policy,
                source={"secretRef": {"name": "src"}},
                projections=[{"namespace": namespace}],
            )
        )
    wait_for(lambda: kk.value(victim, "k") == kk.value(home, "k") == guess, what="both projected")
    theirs, mine = _fingerprints(kk, victim), _fingerprints(kk, home)
    assert theirs != mine, "status: the same value shows the same fingerprint in two keys"

    uids = {ns: kk.key(ns, "k")["metadata"]["uid"] for ns in (victim, home)}  # type: ignore[index]
    audited = {
        ns: {r["fingerprint"] for r in operator.audit_records() if r.get("uid") == uid} - {""}
        for ns, uid in uids.items()
    }
    assert audited[victim] == set(theirs), "the audit log shows the key's own fingerprint"
    assert audited[home] == set(mine)
    assert not audited[victim] & audited[home], "audit: no fingerprint shared across keys"

    told = kk.wait_for_events(victim, "k", "Created")
    shown = set(re.findall(r"hmac-sha256:[0-9a-f]{32}", " ".join(e.message for e in told)))
    assert shown == set(theirs), "an Event shows the key's own fingerprint"
