"""The reconcile's orchestration against the in-memory API at the ``Kube.call`` seam.

Each test runs in milliseconds; the same behaviours are proven against the real
apiserver in tests/integration and tests/adversarial.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from keykeeper.api.models import API_VERSION
from keykeeper.audit.events import EventSink
from keykeeper.audit.log import AuditLog
from keykeeper.controllers.apikey.reconcile import Reconciler
from keykeeper.crypto.kdf import MasterKey
from keykeeper.errors import ApiUnavailable, Conflict
from keykeeper.keys.keyring import Keyring
from keykeeper.keys.sealing import SealingKeys
from keykeeper.kube.credentials import credentials_reader
from keykeeper.kube.paths import apikey_path, secret_path
from keykeeper.kube.world import World
from keykeeper.providers import registry
from keykeeper.providers.cache import ProviderCache
from tests.unit.fakekube import FakeKube

OPERATOR_NS = "keykeeper-system"
# a valid PKCS#11 policy whose credentials Secret does not exist: the provider fails
BROKEN_HSM = {
    "provider": "pkcs11",
    "credentialsSecretRef": {"name": "gone"},
    "options": {"token": "t"},
}


class Harness:
    def __init__(self, tmp_path: Path) -> None:
        self.kube = FakeKube()
        self.world = World()
        self.keyring = Keyring(MasterKey(b"k" * 32))
        self.providers = ProviderCache(registry, self.keyring.local, credentials_reader(self.kube))
        self.sealing = SealingKeys(self.kube, OPERATOR_NS, self.keyring.local, None, None)
        self.audit = AuditLog(tmp_path / "audit.jsonl", self.keyring.audit_key, fsync=False)
        self.now = datetime(2026, 1, 1, tzinfo=UTC)
        self.reconciler = Reconciler(
            self.kube,
            self.world,
            self.keyring,
            self.providers,
            self.sealing,
            EventSink(self.kube, "test"),
            self.audit,
            OPERATOR_NS,
            clock=lambda: self.now,
        )

    def namespaces(self, *names: str) -> None:
        for name in names:
            self.world.put_namespace({"metadata": {"name": name}})

    def policy(self, name: str, **spec: Any) -> None:
        body = {"sourceNamespaces": {"selector": {}}, **spec}
        self.world.put_policy({"metadata": {"name": name, "generation": 1}, "spec": body})

    def apikey(self, ns: str, name: str, policy: str, *targets: str, **spec: Any) -> None:
        self.kube.put(
            apikey_path(ns, name),
            {
                "apiVersion": API_VERSION,
                "kind": "ApiKey",
                "spec": {
                    "policy": policy,
                    "source": spec.pop("source", {"generate": {}}),
                    "projections": [{"namespace": t} for t in targets],
                    **spec,
                },
            },
        )

    def patch_key(self, ns: str, name: str, patch: dict[str, Any]) -> None:
        asyncio.run(self.kube.patch(apikey_path(ns, name), patch))

    def reconcile(self, ns: str, name: str, *, watched: bool = True) -> float | None:
        """One reconcile; ``watched``: the watch has delivered the key as it is now."""
        body = self.kube.objects.get(apikey_path(ns, name))
        if watched and body is not None:
            self.world.put_key(body)
        self.kube.requests.clear()
        return asyncio.run(self.reconciler.reconcile((ns, name)))

    def status(self, ns: str, name: str) -> dict[str, Any]:
        status: dict[str, Any] = self.kube.objects[apikey_path(ns, name)].get("status", {})
        return status

    def secret(self, ns: str, name: str) -> dict[str, Any] | None:
        return self.kube.objects.get(secret_path(ns, name))

    def events(self) -> list[dict[str, Any]]:
        return [body for path, body in self.kube.objects.items() if "/events/" in path]

    def writes(self) -> Counter[str]:
        return Counter(
            f"{m} {p.split('/')[-1] if p.endswith('status') else _kind(p)}"
            for m, p in self.kube.writes()
        )


def _condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    found: dict[str, Any] = next(c for c in status["conditions"] if c["type"] == type_)
    return found


def _kind(path: str) -> str:
    parts = path.split("/")
    return next(p for p in reversed(parts) if p in {"secrets", "apikeys", "events", "keypolicies"})


@pytest.fixture
def h(tmp_path: Path) -> Harness:
    harness = Harness(tmp_path)
    harness.namespaces("home", "a", "b", OPERATOR_NS)
    harness.policy("p", targetNamespaces={"names": ["a", "b"]})
    return harness


def test_a_new_key_with_three_targets_and_then_nothing(h: Harness) -> None:
    h.apikey("home", "k", "p", "home", "a", "b")
    h.reconcile("home", "k")
    # seven requests, reads included: the key comes from the watch, a new key's store is
    # not looked for, and one Event tells all the actions
    assert len(h.kube.requests) == 7
    assert h.writes() == Counter(
        {"PATCH apikeys": 1, "POST secrets": 4, "PATCH status": 1, "POST events": 1}
    )
    assert {p["state"] for p in h.status("home", "k")["projections"]} == {"Projected"}
    h.reconcile("home", "k")
    assert h.kube.writes() == [], "a key whose world did not change writes nothing"


def test_revocation_needs_no_provider(h: Harness) -> None:
    h.apikey("home", "k", "p", "a", "b")
    h.reconcile("home", "k")
    # the policy's provider now fails (its credentials Secret does not exist) ...
    h.policy(
        "p",
        targetNamespaces={"names": ["a", "b"]},
        kms=BROKEN_HSM,
    )
    # ... and the tenant revokes
    h.patch_key("home", "k", {"spec": {"revoked": True}})
    h.reconcile("home", "k")
    assert h.secret("a", "k") is None and h.secret("b", "k") is None
    assert h.status("home", "k")["phase"] == "Revoked"


def test_a_provider_that_fails_keeps_authorized_copies(h: Harness) -> None:
    h.apikey("home", "k", "p", "a")
    h.reconcile("home", "k")
    h.policy(
        "p",
        targetNamespaces={"names": ["a"]},
        kms=BROKEN_HSM,
    )
    h.now += timedelta(hours=1)
    h.patch_key(
        "home",
        "k",
        {
            "metadata": {
                "annotations": {"keykeeper.dev/rotate-requested-at": "2026-01-01T00:30:00Z"}
            }
        },
    )
    retry = h.reconcile("home", "k")
    assert h.secret("a", "k") is not None, "an outage never withdraws an authorized copy"
    ready = next(c for c in h.status("home", "k")["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "InvalidProviderConfig")
    assert retry is not None


def test_an_immutable_copy_is_withdrawn_and_the_others_rotate(h: Harness) -> None:
    h.apikey("home", "k", "p", "a", "b")
    h.reconcile("home", "k")
    h.kube.objects[secret_path("b", "k")]["immutable"] = True  # the recipient's doing
    h.now += timedelta(hours=1)
    h.patch_key(
        "home",
        "k",
        {
            "metadata": {
                "annotations": {"keykeeper.dev/rotate-requested-at": "2026-01-01T00:30:00Z"}
            }
        },
    )
    h.reconcile("home", "k")
    a = h.secret("a", "k")
    assert a is not None and a["metadata"]["annotations"]["keykeeper.dev/version"] == "2"
    assert h.secret("b", "k") is None, "a copy that cannot be updated is withdrawn"
    states = {p["namespace"]: p["state"] for p in h.status("home", "k")["projections"]}
    assert states == {"a": "Projected", "b": "Failed"}
    h.reconcile("home", "k")
    b = h.secret("b", "k")
    assert b is not None and b["metadata"]["annotations"]["keykeeper.dev/version"] == "2"


def test_one_failing_target_never_stops_the_others(h: Harness) -> None:
    h.apikey("home", "k", "p", "a", "b")
    h.kube.fail = lambda method, path: (
        ApiUnavailable("503") if method == "POST" and path == secret_path("a") else None
    )
    retry = h.reconcile("home", "k")
    assert h.secret("b", "k") is not None
    states = {p["namespace"]: p["state"] for p in h.status("home", "k")["projections"]}
    assert states == {"a": "Failed", "b": "Projected"}
    assert retry is not None and retry <= 10


def test_an_unadmitted_namespace_uses_nothing(h: Harness) -> None:
    h.policy("narrow", sourceNamespaces={"names": ["other"]})
    h.kube.put(secret_path("home", "src"), {"data": {"api-key": "eA=="}})
    h.apikey("home", "k", "narrow", "home", source={"secretRef": {"name": "src"}})
    h.reconcile("home", "k")
    touched = {p for _, p in h.kube.requests}
    assert secret_path("home", "src") not in touched
    assert not any(p.startswith(secret_path(OPERATOR_NS)) for p in touched), "no store"
    ready = next(c for c in h.status("home", "k")["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "SourceNamespaceNotAllowed"


def test_a_secret_with_forged_labels_is_never_overwritten(h: Harness) -> None:
    h.kube.put(
        secret_path("a", "k"),
        {
            "metadata": {
                "labels": {
                    "app.kubernetes.io/managed-by": "keykeeper",
                    "keykeeper.dev/role": "projection",
                    "keykeeper.dev/apikey-namespace": "home",
                    "keykeeper.dev/apikey-name": "k",
                }
            },
            "data": {"api-key": "dGhlaXJz"},
        },
    )
    h.apikey("home", "k", "p", "a")
    h.reconcile("home", "k")
    assert h.secret("a", "k")["data"] == {"api-key": "dGhlaXJz"}  # type: ignore[index]
    (only,) = h.status("home", "k")["projections"]
    # in a namespace its author cannot list, a taken name reads as not authorized (K6)
    assert (only["state"], only["reason"]) == ("Denied", "NotAuthorizedByPolicy")


def test_deletion_withdraws_erases_and_lets_go(h: Harness) -> None:
    h.apikey("home", "k", "p", "a")
    h.reconcile("home", "k")
    asyncio.run(h.kube.delete(apikey_path("home", "k")))  # marks it: the finalizer holds it
    h.reconcile("home", "k")
    assert h.secret("a", "k") is None
    assert not any(p.startswith(secret_path(OPERATOR_NS)) for p in h.kube.objects)
    assert apikey_path("home", "k") not in h.kube.objects


def test_provider_options_are_typed_when_the_policy_is_read(h: Harness) -> None:
    h.policy("typo", kms={"provider": "pkcs11", "options": {"token": "t", "per_key": "true"}})
    view = h.world.policies["typo"]
    assert view.spec is None and "per_key" in view.error


def test_the_spec_is_parsed_once_per_generation(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    import keykeeper.kube.specs as specs_module

    parses: list[object] = []
    real = specs_module.parse_apikey_spec

    def counting(body: Any) -> Any:
        parses.append(body)
        return real(body)

    monkeypatch.setattr(specs_module, "parse_apikey_spec", counting)
    h.apikey("home", "k", "p", "a")
    h.world.put_key(h.kube.objects[apikey_path("home", "k")])  # the watch event
    h.reconcile("home", "k")
    h.reconcile("home", "k")
    assert len(parses) == 1, "the watch event and both reconciles share one parse"
    h.patch_key("home", "k", {"spec": {"projections": [{"namespace": "b"}]}})
    h.reconcile("home", "k")
    assert len(parses) == 2, "a new generation is parsed again"
    assert h.secret("b", "k") is not None and h.secret("a", "k") is None


def test_a_stale_watched_key_is_read_again_when_its_finalizer_patch_conflicts(
    h: Harness,
) -> None:
    h.apikey("home", "k", "p", "a")
    stale = h.kube.objects[apikey_path("home", "k")]
    h.world.put_key(stale)  # the watch delivered this version ...
    h.patch_key("home", "k", {"metadata": {"annotations": {"team": "x"}}})  # ... not this one
    h.reconcile("home", "k", watched=False)
    assert ("GET", apikey_path("home", "k")) in h.kube.requests
    assert h.status("home", "k")["phase"] == "Active"
    assert h.kube.objects[apikey_path("home", "k")]["metadata"]["annotations"] == {"team": "x"}


def test_a_key_stripped_of_finalizer_and_status_never_loses_its_stored_version(
    h: Harness,
) -> None:
    """A new-looking key is not looked up in the store; if a store exists after all, its
    create conflicts and nothing is overwritten: the next reconcile reads it."""
    h.apikey("home", "k", "p", "a")
    h.reconcile("home", "k")
    first = h.secret("a", "k")
    assert first is not None
    store_before = {p: b for p, b in h.kube.objects.items() if "/secrets/ak-" in p}
    body = h.kube.objects[apikey_path("home", "k")]
    body["metadata"]["finalizers"] = []
    body.pop("status")
    with pytest.raises(Conflict):
        h.reconcile("home", "k")
    assert {p: b for p, b in h.kube.objects.items() if "/secrets/ak-" in p} == store_before
    h.reconcile("home", "k")
    assert h.secret("a", "k")["data"] == first["data"]  # type: ignore[index]
    assert h.status("home", "k")["currentVersion"] == 1


def test_a_key_the_watch_has_not_delivered_is_read(h: Harness) -> None:
    h.apikey("home", "k", "p", "a")
    h.reconcile("home", "k", watched=False)
    assert ("GET", apikey_path("home", "k")) in h.kube.requests
    assert h.status("home", "k")["phase"] == "Active"


def test_targets_written_at_once_open_the_envelope_once(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened = []
    real_open = h.keyring.open

    async def counting(*args: Any, **kwargs: Any) -> bytes:
        opened.append(args[1])
        await asyncio.sleep(0.01)  # let the other targets' writes arrive while it opens
        return await real_open(*args, **kwargs)

    monkeypatch.setattr(h.keyring, "open", counting)
    h.apikey("home", "k", "p", "home", "a", "b")
    h.reconcile("home", "k")
    assert len(opened) == 1
    values = {h.secret(ns, "k")["data"]["api-key"] for ns in ("home", "a", "b")}  # type: ignore[index]
    assert len(values) == 1


def test_a_full_audit_volume_does_not_keep_a_revoked_key_projected(h: Harness) -> None:
    """K9: tenants can fill the audit volume (many targets, many commands); every
    withdrawal then failed on its record and the revoked value stayed served."""
    h.apikey("home", "k", "p", "a", "b")
    h.reconcile("home", "k")
    assert h.secret("a", "k") is not None
    h.audit.path = Path("/dev/full")  # every write: ENOSPC
    h.patch_key("home", "k", {"spec": {"revoked": True}})
    retry = h.reconcile("home", "k")  # recording the revocation itself waits for the disk
    assert h.secret("a", "k") is None and h.secret("b", "k") is None
    ready = _condition(h.status("home", "k"), "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "AuditUnavailable"), ready
    assert h.status("home", "k")["phase"] == "Revoked"
    assert retry is not None and retry <= 10.0


def test_without_its_audit_record_nothing_is_exposed_and_the_status_says_why(
    h: Harness, tmp_path: Path
) -> None:
    """K9: no record, no exposure; the key says ``Ready=False AuditUnavailable`` (not a
    reconcile that fails unseen) and is projected once the log takes records again."""
    h.audit.path = Path("/dev/full")
    h.apikey("home", "k", "p", "a")
    retry = h.reconcile("home", "k")
    assert h.secret("a", "k") is None, "a value projected without its audit record"
    ready = _condition(h.status("home", "k"), "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "AuditUnavailable"), ready
    assert retry is not None
    assert any(e["reason"] == "AuditUnavailable" for e in h.events()), h.events()
    h.audit.path = tmp_path / "audit.jsonl"
    h.reconcile("home", "k")
    assert h.secret("a", "k") is not None
    assert _condition(h.status("home", "k"), "Ready")["status"] == "True"


def test_one_record_per_action_per_reconcile_names_every_target(h: Harness) -> None:
    """K9: a record per target let a tenant grow the log by ~400 bytes per target per
    command; a reconcile now writes one record per action, naming all its targets."""
    h.apikey("home", "k", "p", "home", "a", "b")
    h.reconcile("home", "k")
    h.patch_key("home", "k", {"spec": {"revoked": True}})
    h.reconcile("home", "k")
    records = [json.loads(line) for line in h.audit.path.read_text().splitlines()]
    by_action = Counter(r["action"] for r in records)
    assert by_action["Projected"] == 1 and by_action["ProjectionWithdrawn"] == 1, by_action
    for action in ("Projected", "ProjectionWithdrawn"):
        detail = next(r["detail"] for r in records if r["action"] == action)
        assert {"home/k", "a/k", "b/k"} == set(detail.split("; ")), detail


def test_a_status_computed_from_a_stale_key_is_not_written(h: Harness) -> None:
    """K12: the status patch carries the resourceVersion the reconcile read. A replica
    that stopped leading (or a reconcile that read the key before it changed) cannot
    overwrite the status another writer has written since; the key is looked at again,
    read from the API."""
    h.apikey("home", "k", "p", "a", "b")
    h.reconcile("home", "k")
    h.world.put_key(h.kube.objects[apikey_path("home", "k")])  # what this replica saw
    by_leader = {"status": {"phase": "Suspended"}}  # written since, by the new leader
    asyncio.run(h.kube.patch(apikey_path("home", "k", status=True), by_leader))
    newer = json.loads(json.dumps(h.status("home", "k")))
    h.world.drop_namespace("b")  # this replica's reconcile has a status to write
    retry = asyncio.run(h.reconciler.reconcile(("home", "k")))  # from the stale body
    assert h.status("home", "k") == newer, "a stale status overwrote a newer one"
    assert retry is not None and retry <= 1.0
    assert h.world.body_of(("home", "k")) is None, "the next reconcile reads the key again"
    asyncio.run(h.reconciler.reconcile(("home", "k")))  # from the API's body: written
    assert h.status("home", "k")["phase"] == "Active"
