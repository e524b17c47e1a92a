"""What a tenant writes never shapes what the operator exposes: the metrics a scrape
shows (label values from closed sets, no forged series) and the audit stream (one
record a line, whatever the text it carries).

The tenant writes ApiKeys whose annotations, labels and projections carry exposition
syntax and line breaks, a rotate request that is not a time, an owner label naming
another team, and a request into a namespace the policy denies; the operator's
/metrics must still parse, with every label value from its closed set (or, for the
per-key series, a name or label value as the apiserver admits them) and one
``keykeeper_leader`` sample, and its audit log must still be one verifiable JSON
record a line.
"""

from __future__ import annotations

import json
import re
import urllib.request

import pytest
from devtools.kk import Cluster, apikey, keypolicy, unique
from devtools.operator import Operator, wait_for
from prometheus_client.parser import text_string_to_metric_families

from keykeeper.api.models import Phase
from tests.adversarial.tenant import Tenant

pytestmark = pytest.mark.cluster

FORGERY = 'x"} 1\nkeykeeper_leader{pod="forged"} 1\n# TYPE keykeeper_keys gauge\n'


def scrape(operator: Operator) -> str:
    with urllib.request.urlopen(operator.metrics, timeout=10) as answer:
        return str(answer.read().decode())


def test_hostile_keys_shape_neither_the_metrics_nor_the_audit_stream(
    attacker: Tenant, kk: Cluster, operator: Operator
) -> None:
    policy = unique("pol")
    kk.create(keypolicy(policy, rotation={"period": "30d"}))  # per-key series: rotation due
    home = attacker.namespace
    before = len(operator.audit_records())
    for i, extra in enumerate(
        [
            {"annotations": {"keykeeper.dev/rotate-requested-at": FORGERY}},
            {
                "annotations": {"note": FORGERY},
                "labels": {"team": "x-y_z.1", "keykeeper.dev/owner": "someone-else"},
            },
            {"annotations": {"keykeeper.dev/rotate-requested-at": "9" * 5000}},
        ]
    ):
        body = apikey(
            home,
            f"hostile-{i}",
            policy,
            projections=[{"namespace": home}, {"namespace": "kube-system", "secretName": "x"}],
        )
        body["metadata"].update(extra)
        attacker.kk.create(body)
    wait_for(
        lambda: all((kk.key(home, f"hostile-{i}") or {}).get("status") for i in range(3)),
        timeout=60,
        what="the operator reconciled every hostile key",
    )
    wait_for(lambda: len(operator.audit_records()) > before, what="audit records")

    text = scrape(operator)
    families = list(text_string_to_metric_families(text))  # raises on a forged line
    closed = {p.value for p in Phase} | {"Pending", "Unknown"}
    leaders = []
    named = {"namespace", "name", "owner"}  # the per-key series
    for family in families:
        for sample in family.samples:
            assert set(sample.labels) <= {
                *("phase", "error", "provider", "operation", "le", "result", "state", "key_ref"),
                *named,
            }, sample
            assert sample.labels.get("phase", "Active") in closed, sample
            assert sample.labels.get("state", "ok") in {"ok", "expiring", "expired"}, sample
            for name in ("error", "provider", "operation", "result"):
                value = sample.labels.get(name, "ok")
                assert value.replace("_", "").replace("-", "").isalnum(), sample
            for name in named & set(sample.labels):
                assert re.fullmatch(r"[A-Za-z0-9._-]{0,253}", sample.labels[name]), sample
            assert re.fullmatch(r"[\x21-\x7e]*", sample.labels.get("key_ref", "")), sample
            if sample.name == "keykeeper_leader":
                leaders.append(sample)
    due = {
        (s.labels["namespace"], s.labels["name"]): s.labels["owner"]
        for f in families
        for s in f.samples
        if s.name == "keykeeper_key_rotation_due_timestamp_seconds"
    }
    assert due.get((home, "hostile-1")) == "someone-else", "the owner is routing, not trust"
    assert len(leaders) == 1, "one leader sample, not a forged one"
    assert "forged" not in text
    assert FORGERY.splitlines()[1] not in text

    lines = operator.audit_log.read_text().splitlines()
    records = [json.loads(line) for line in lines if line.strip()]
    assert all(isinstance(r, dict) and "mac" in r for r in records), "one record a line"
    assert [r["seq"] for r in records] == list(range(records[0]["seq"], records[-1]["seq"] + 1))
