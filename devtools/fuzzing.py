"""A fuzz of ApiKey and KeyPolicy specs against the real apiserver and the operator.

``Fuzz(seed)`` makes random specs from pools of good, odd and hostile parts (names
with traversal, selectors over everything, broken durations and patterns, sealed junk,
imports without consent, flapping suspend/revoke), applies them, and then checks the
invariants keykeeper promises whatever it is fed:

* the operator process is alive and logged no unexpected exception (crash);
* every admitted ApiKey has a status for its current generation (no stuck key);
* every projected Secret of a fuzzed key is in a namespace the pure authorization
  function allows for that key, its policy and the live namespaces (no leak of scope),
  and revoked or suspended keys have none;
* no value the fuzz supplied appears in the log, Events, statuses or audit (``Leaks``).

The test runs a few hundred specs; ``bench/fuzz.py`` runs ten thousand and more.
"""

from __future__ import annotations

import base64
import contextlib
import random
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from kubernetes.client.exceptions import ApiException

from devtools.kk import Cluster, apikey, keypolicy, unique
from keykeeper.api import labels
from keykeeper.api.models import Phase, parse_apikey_spec, parse_policy_spec
from keykeeper.core import authz
from keykeeper.core.authz import NamespaceInfo
from keykeeper.crypto.sealed import SealingPublicKey, seal
from keykeeper.errors import KeykeeperError, SpecError

NOW = int(time.time())  # when these tests seal

HOSTILE_NAMES = ["../x", "..", "a/b", "%2e%2e", "UP", "x" * 300, "", "vi\u0441tim", "a..b", "x\x00"]
DURATIONS = [
    "90d",
    "1s",
    "2s",
    "24h",
    "1h30m",
    "0s",
    "99999999999999999999999999w",
    "9999w",
    "x",
    "30",
]
PATTERNS = [None, "^sk_[a-z]+$", "^([A-Za-z0-9]+_?)+$", "(a)\\1", "(?=a)", "[", ".*"]
LABELS = [{"team": "a"}, {"team": "b"}, {"tier": "prod"}, {}, {"team": "a", "tier": "prod"}]


@dataclass
class Fuzz:
    kk: Cluster
    seed: int
    sealing_key: SealingPublicKey | None = None
    rng: random.Random = field(init=False)
    namespaces: list[str] = field(default_factory=list)
    policies: list[str] = field(default_factory=list)
    keys: list[tuple[str, str]] = field(default_factory=list)
    values: list[bytes] = field(default_factory=list)
    admitted: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    # -- the world ------------------------------------------------------------------------

    def setup(self, namespaces: int = 6, policies: int = 8) -> None:
        for _ in range(namespaces):
            self.namespaces.append(self.kk.namespace("fz", dict(self.rng.choice(LABELS))))
        for _ in range(policies):
            self._apply("policy", self._policy())

    def _name(self) -> str:
        pool = [*self.namespaces, "missing-ns", "keykeeper-system", "kube-system"]
        return self.rng.choice(pool if self.rng.random() < 0.85 else HOSTILE_NAMES)

    def _selection(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.rng.random() < 0.6:
            out["names"] = self.rng.sample(self.namespaces, self.rng.randint(0, 3))
        if self.rng.random() < 0.5 or not out:
            out["selector"] = {"matchLabels": dict(self.rng.choice(LABELS))}
        return out

    def _policy(self) -> dict[str, Any]:
        rng = self.rng
        spec: dict[str, Any] = {}
        if rng.random() < 0.8:
            spec["rotation"] = {
                "period": rng.choice(DURATIONS),
                "gracePeriod": rng.choice(DURATIONS),
            }
        if rng.random() < 0.3:
            spec["retention"] = {"revokedFor": rng.choice(DURATIONS)}
        pattern = rng.choice(PATTERNS)
        if pattern is not None or rng.random() < 0.2:
            spec["value"] = {"minLength": rng.choice([0, 5, 20, 70000]), "pattern": pattern}
        if rng.random() < 0.2:
            spec["generator"] = {"length": rng.choice([8, 16, 40, 600]), "prefix": "kk_"}
        if rng.random() < 0.15:
            spec["kms"] = {"provider": rng.choice(["aws", "gcp", "azure", "pkcs11"])}
        targets = self._selection() if rng.random() < 0.8 else None
        if targets is not None and rng.random() < 0.3:
            targets["allowOwnNamespace"] = False
        return keypolicy(unique("fzp"), sources=self._selection(), targets=targets, **spec)

    def _source(self, namespace: str, name: str, policy: str) -> dict[str, Any]:
        rng = self.rng
        kind = rng.random()
        if kind < 0.5:
            return {"generate": rng.choice([{}, {"length": 20}, {"length": 3}, {"prefix": "../"}])}
        value = b"fz_" + base64.b32encode(rng.randbytes(15)).lower()
        if kind < 0.75 and self.sealing_key is not None:
            self.values.append(value)
            target = name if rng.random() < 0.7 else "someone-else"
            bound = policy if rng.random() < 0.8 and "/" not in policy else "another-policy"
            sealed = seal(self.sealing_key, namespace, target, value, policy=bound, sealed_at=NOW)
            if rng.random() < 0.1:
                sealed = sealed[:-8] + "AAAAAAAA"  # tampered
            return {"sealed": sealed}
        secret = unique("fzs")
        self.values.append(value)
        consent = rng.choice([name, None, "other", f"x,{name}"])
        with contextlib.suppress(ApiException):
            self.kk.put_secret(namespace, secret, {"api-key": value}, importable_by=consent)
        ref_name = secret if rng.random() < 0.85 else rng.choice(HOSTILE_NAMES)
        return {"secretRef": {"name": ref_name, "deleteAfterImport": rng.random() < 0.3}}

    def _apikey(self) -> dict[str, Any]:
        rng = self.rng
        namespace = rng.choice(self.namespaces)
        name = unique("fzk") if rng.random() < 0.95 else rng.choice(HOSTILE_NAMES)
        projections: list[dict[str, Any]] = []
        for _ in range(rng.randint(0, 4)):
            if rng.random() < 0.7:
                item: dict[str, Any] = {"namespace": self._name()}
            else:
                item = {"namespaceSelector": {"matchLabels": dict(rng.choice(LABELS))}}
            if rng.random() < 0.3:
                item["secretName"] = rng.choice(["out", "k", "../x", "a..b", "x" * 254])
            if rng.random() < 0.2:
                item["key"] = rng.choice(["token", "..", "a/b", "api-key"])
            projections.append(item)
        policy = rng.choice(self.policies) if self.policies else "none"
        if rng.random() < 0.05:
            policy = rng.choice(["missing-policy", "../x"])
        return apikey(
            namespace,
            name,
            policy,
            projections=projections,
            source=self._source(namespace, name, policy),
            suspended=rng.random() < 0.1,
            revoked=rng.random() < 0.05,
        )

    def _apply(self, kind: str, body: dict[str, Any]) -> None:
        try:
            self.kk.create(body)
        except ApiException as exc:
            if exc.status not in (400, 409, 422):
                raise
            self.rejected[kind] += 1
            return
        self.admitted[kind] += 1
        if kind == "policy":
            self.policies.append(body["metadata"]["name"])
        else:
            self.keys.append((body["metadata"]["namespace"], body["metadata"]["name"]))

    def mutate(self) -> None:
        """Flip something on an existing key or policy, as a tenant or GitOps would."""
        rng = self.rng
        if self.keys and rng.random() < 0.7:
            namespace, name = rng.choice(self.keys)
            patch: dict[str, Any] = rng.choice(
                [
                    {"spec": {"suspended": rng.random() < 0.5}},
                    {"spec": {"revoked": True}},
                    {"spec": {"projections": [{"namespace": self._name()}]}},
                    {
                        "metadata": {
                            "annotations": {labels.ROTATE_REQUESTED_AT: "2099-01-01T00:00:00Z"}
                        }
                    },
                    {"metadata": {"annotations": {labels.ROTATE_REQUESTED_AT: "garbage"}}},
                ]
            )
            kind = "key-change"
            call = lambda: self.kk.patch_key(namespace, name, patch)  # noqa: E731
        elif self.policies:
            name = rng.choice(self.policies)
            targets = self._selection()
            kind = "policy-change"
            call = lambda: self.kk.patch_policy(name, {"spec": {"targetNamespaces": targets}})  # noqa: E731
        else:
            return
        try:
            call()
            self.admitted[kind] += 1
        except ApiException as exc:
            if exc.status not in (400, 404, 409, 422):
                raise
            self.rejected[kind] += 1

    def run(self, count: int) -> None:
        for _ in range(count):
            if self.rng.random() < 0.2:
                self.mutate()
            elif self.rng.random() < 0.05:
                self._apply("policy", self._policy())
            else:
                self._apply("apikey", self._apikey())

    # -- the invariants ------------------------------------------------------------------------

    def stuck(self) -> list[tuple[str, str]]:
        """Admitted keys without a status for their current generation."""
        out = []
        for body in self.kk.apikeys():
            meta = body["metadata"]
            if (meta["namespace"], meta["name"]) not in set(self.keys):
                continue
            status = body.get("status") or {}
            if status.get("observedGeneration") != meta.get("generation"):
                out.append((meta["namespace"], meta["name"]))
        return out

    def wait_settled(self, timeout: float) -> list[tuple[str, str]]:
        deadline = time.monotonic() + timeout
        stuck = self.stuck()
        while stuck and time.monotonic() < deadline:
            time.sleep(1.0)
            stuck = self.stuck()
        return stuck

    def wait_in_scope(self, timeout: float) -> list[str]:
        """``out_of_scope`` once it is empty, or as it still is after ``timeout``. A
        policy change moves no key's generation, so ``wait_settled`` cannot see the
        withdrawals it causes still under way; they must end within the bound."""
        deadline = time.monotonic() + timeout
        problems = self.out_of_scope()
        started = time.monotonic()
        while problems and time.monotonic() < deadline:
            time.sleep(1.0)
            problems = self.out_of_scope()
        print(f"in scope after {time.monotonic() - started:.1f} s ({len(problems)} left)")
        return problems

    def out_of_scope(self) -> list[str]:
        """Projected Secrets of fuzzed keys that authorization does not allow now."""
        namespaces = {
            str(ns.metadata.name): NamespaceInfo(
                str(ns.metadata.name),
                ns.metadata.labels or {},
                bool(ns.metadata.deletion_timestamp),
            )
            for ns in self.kk.core.list_namespace().items
        }
        keys = {(k["metadata"]["namespace"], k["metadata"]["name"]): k for k in self.kk.apikeys()}
        policies = {}
        for name in self.policies:
            try:
                policies[name] = parse_policy_spec(self.kk.policy(name)["spec"])
            except (ApiException, SpecError):
                continue
        selector = f"{labels.MANAGED_SELECTOR},{labels.ROLE}={labels.ROLE_PROJECTION}"
        found = self.kk.core.list_secret_for_all_namespaces(label_selector=selector).items
        problems = []
        for secret in found:
            lbl = secret.metadata.labels or {}
            owner = (str(lbl.get(labels.APIKEY_NAMESPACE)), str(lbl.get(labels.APIKEY_NAME)))
            if owner not in set(self.keys):
                continue
            where = f"{secret.metadata.namespace}/{secret.metadata.name} of {owner[0]}/{owner[1]}"
            body = keys.get(owner)
            if body is None:
                problems.append(f"{where}: the key is gone")
                continue
            spec = parse_apikey_spec(body["spec"])
            if spec.revoked or spec.suspended:
                problems.append(f"{where}: the key is revoked or suspended")
                continue
            context = authz.KeyContext(
                namespaces.get(owner[0], NamespaceInfo(str(owner[0]))),
                Phase.ACTIVE,
                frozenset({"keykeeper-system"}),
            )
            allowed = {
                (t.namespace, t.secret_name)
                for t, d in authz.plan(
                    context, spec, str(owner[1]), policies.get(spec.policy), namespaces
                )
                if d.allowed
            }
            if (str(secret.metadata.namespace), str(secret.metadata.name)) not in allowed:
                problems.append(f"{where}: not authorized")
        return problems


_FAILED = re.compile(r"reconcile of .* failed \((\w+):")


def _error_names(cls: type[BaseException] = KeykeeperError) -> set[str]:
    """Every class in keykeeper's error tree (the modules that define some are loaded)."""

    return {cls.__name__}.union(*(_error_names(sub) for sub in cls.__subclasses__()))


def crashes(log_text: str) -> list[str]:
    """Log lines of unexpected exceptions: any failure not from keykeeper's error tree
    (which is an expected, reported failure), and any traceback."""
    expected = _error_names()
    out = []
    for line in log_text.splitlines():
        failed = _FAILED.search(line)
        if "Traceback" in line or (failed is not None and failed.group(1) not in expected):
            out.append(line[:300])
    return out
