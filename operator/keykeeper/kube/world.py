"""What the operator knows of the cluster between API calls, fed by kopf's watches.

Policies, namespaces, an index of ApiKeys (the policy each names, the namespaces it
names and the selectors it uses), and every Secret keykeeper projected (HMAC
fingerprints of their data, never the data; only with a valid ownership proof, see
``projection``, so a forged one costs nothing). The reconciler reads this instead of
listing, so a key nothing touches costs no API call. Of a key no policy admits only its
name, policy and status are kept (K3). Beside it, by concern: the echoes of the
operator's own writes (``kube.echoes``), the parsed specs (``kube.specs``), which keys a
namespace concerns (``kube.targets_index``), and, through ``on_status``, the metrics'
per-key facts (``runtime.keyfacts``).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from keykeeper.api.models import ApiKeySpec, KeyPolicySpec, Phase, parse_policy_spec
from keykeeper.core.authz import KeyContext, NamespaceInfo, accepted_sources, admits_source, selects
from keykeeper.core.projection import ProjectedSecret, Prover, recorded
from keykeeper.errors import SpecError
from keykeeper.kube.echoes import Echoes
from keykeeper.kube.specs import SpecCache
from keykeeper.kube.targets_index import TargetsIndex
from keykeeper.types import KeyRef, Slot


def _ignore(ref: KeyRef, status: Mapping[str, Any] | None) -> None:
    pass


@dataclass(frozen=True)
class PolicyView:
    name: str
    spec: KeyPolicySpec | None
    error: str = ""
    generation: int = 0
    body: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass
class World:
    namespaces: dict[str, NamespaceInfo] = field(default_factory=dict)
    policies: dict[str, PolicyView] = field(default_factory=dict)
    key_policy: dict[KeyRef, str] = field(default_factory=dict)
    policy_keys: dict[str, set[KeyRef]] = field(default_factory=lambda: defaultdict(set))
    # which keys a namespace's change concerns, answered without a scan (K4)
    targets: TargetsIndex = field(default_factory=TargetsIndex)
    projected: dict[KeyRef, ProjectedSecret] = field(default_factory=dict)
    by_owner: dict[KeyRef, set[KeyRef]] = field(default_factory=lambda: defaultdict(set))
    echoes: Echoes = field(default_factory=Echoes)
    specs: SpecCache = field(default_factory=SpecCache)
    # keys whose envelopes are still under a KMS key their policy no longer names
    stale_kms: dict[KeyRef, str] = field(default_factory=dict)
    # each ApiKey as the watch last delivered it (no managedFields): what a reconcile
    # starts from, so it costs no GET; and the status each key was last written with,
    # until the watch echoes it (a reconcile before the echo compares against this)
    # (kept as compact JSON: ~1 KB a key, where the dict was ~7 KB)
    bodies: dict[KeyRef, bytes] = field(default_factory=dict)
    written_status: dict[KeyRef, tuple[str, dict[str, Any]]] = field(default_factory=dict)
    # told each status the world learns of a key (None: the key is gone); the runtime
    # hooks the metrics' bookkeeping here (``runtime.keyfacts``)
    on_status: Callable[[KeyRef, Mapping[str, Any] | None], None] = _ignore

    # -- namespaces ----------------------------------------------------------------------------

    def put_namespace(self, body: dict[str, Any]) -> NamespaceInfo | None:
        """Record a namespace; what it was before if authorization sees a change, else None."""
        meta = body.get("metadata", {})
        info = NamespaceInfo(
            meta["name"],
            dict(meta.get("labels") or {}),
            terminating=bool(meta.get("deletionTimestamp"))
            or body.get("status", {}).get("phase") == "Terminating",
            accepts=accepted_sources(meta.get("annotations") or {}),
        )
        before = self.namespaces.get(info.name)
        self.namespaces[info.name] = info
        if before == info:
            return None
        if before is not None and before.labels != info.labels:
            self._reindex(self.targets.keys_in(info.name))  # admission by source labels
        return before or NamespaceInfo(info.name, {}, terminating=True)

    def drop_namespace(self, name: str) -> NamespaceInfo | None:
        return self.namespaces.pop(name, None)

    def keys_affected_by_namespace(self, name: str, before: NamespaceInfo) -> set[KeyRef]:
        """Keys whose targets a change of ``name`` (from ``before``) can add or remove:
        keys in it, keys naming it, and keys whose selectors match its old or new labels
        under a policy that can target it (``kube.targets_index``: no scan of every key)."""
        after = self.namespaces.get(name)
        reach: dict[str, bool] = {}

        def reaches(ref: KeyRef) -> bool:  # its policy could ever target the namespace
            policy = self.key_policy.get(ref, "")
            if policy not in reach:
                view = self.policies.get(policy)
                allowed = view.spec.target_namespaces if view and view.spec else None
                reach[policy] = allowed is not None and any(
                    selects(allowed, info) for info in (before, after) if info is not None
                )
            return reach[policy]

        return self.targets.affected(name, before, after, reaches)

    # -- policies ------------------------------------------------------------------------------

    def put_policy(self, body: dict[str, Any]) -> PolicyView:
        meta = body.get("metadata", {})
        try:
            view = PolicyView(
                meta["name"],
                parse_policy_spec(body.get("spec")),
                generation=meta.get("generation", 0),
                body=body,
            )
        except SpecError as exc:
            view = PolicyView(meta["name"], None, str(exc), meta.get("generation", 0), body)
        self.policies[view.name] = view
        self._reindex(self.keys_of_policy(view.name))
        return view

    def drop_policy(self, name: str) -> None:
        self.policies.pop(name, None)
        self._reindex(self.keys_of_policy(name))

    def keys_of_policy(self, name: str) -> set[KeyRef]:
        return set(self.policy_keys.get(name, ()))

    def note_kms(self, ref: KeyRef, policy: str, stale: bool) -> bool:
        """Record whether a key still waits to be re-wrapped; True if that changed."""
        before = self.stale_kms.get(ref)
        if stale:
            self.stale_kms[ref] = policy
        else:
            self.stale_kms.pop(ref, None)
        return before != (policy if stale else None)

    def keys_under_previous_kms(self, policy: str) -> int:
        return sum(1 for name in self.stale_kms.values() if name == policy)

    # -- keys ----------------------------------------------------------------------------------

    def put_key(self, body: dict[str, Any], *, latest: bool = True) -> KeyRef:
        """Index a key; with ``latest`` (a watch event or the start-up list, never a GET
        that an older watch event could still follow) it is also the body reconciles
        start from."""
        meta = body.get("metadata", {})
        ref = (meta["namespace"], meta["name"])
        policy = str((body.get("spec") or {}).get("policy", ""))
        admitted = self.admitted(ref, policy)
        if latest and admitted:
            kept = {k: v for k, v in meta.items() if k != "managedFields"}
            self.bodies[ref] = json.dumps(
                {**body, "metadata": kept}, separators=(",", ":")
            ).encode()
        elif latest:
            self.bodies.pop(ref, None)  # K3: a reconcile of it reads it from the API
        if latest:
            written = self.written_status.get(ref)
            if written is not None and (
                written[0] == meta.get("resourceVersion") or written[1] == body.get("status")
            ):
                self.written_status.pop(ref, None)  # the echo of the last status write
            if ref not in self.written_status:
                self.on_status(ref, body.get("status") or {})
        old = self.key_policy.get(ref)
        if old != policy:
            if old is not None:
                self.policy_keys[old].discard(ref)
            self.policy_keys[policy].add(ref)
        self.key_policy[ref] = policy
        self._index(ref, body, admitted)
        return ref

    def admitted(self, ref: KeyRef, policy: str) -> bool:
        """Whether ``policy`` exists, is valid and admits keys from the key's namespace:
        only then is anything of the key's spec worth keeping (K3)."""
        view = self.policies.get(policy)
        if view is None or view.spec is None:
            return False
        own = self.namespaces.get(ref[0], NamespaceInfo(ref[0]))
        return admits_source(KeyContext(own, Phase.ACTIVE), view.spec)

    def _index(self, ref: KeyRef, body: dict[str, Any], admitted: bool) -> None:
        """The key's targets in the index; nothing parsed or kept for a key its policy
        does not admit (it can be projected nowhere): a crafted spec costs nothing."""
        if not admitted:
            self.specs.drop(ref)
            self.targets.put(ref, (), ())
            return
        parsed = self.specs.parsed(ref, body)
        projections = parsed.projections if isinstance(parsed, ApiKeySpec) else ()
        self.targets.put(
            ref,
            (p.namespace for p in projections if p.namespace),
            tuple(p.namespace_selector for p in projections if p.namespace_selector),
        )

    def _reindex(self, refs: Iterable[KeyRef]) -> None:
        """Keys whose admission may have changed (their policy, or their namespace's
        labels): a key now refused is forgotten but for its name; one now admitted that
        the world kept nothing of is read from the API by the reconcile its change queues."""
        for ref in list(refs):
            body = self.body_of(ref)
            admitted = self.admitted(ref, self.key_policy.get(ref, ""))
            if body is not None:
                if not admitted:
                    self.bodies.pop(ref, None)
                self._index(ref, body, admitted)

    def spec_of(self, body: dict[str, Any]) -> ApiKeySpec:
        """The key's parsed spec (``SpecError`` if it is invalid), parsed once per generation
        (kept only while its policy admits it)."""
        meta = body.get("metadata", {})
        ref = (meta["namespace"], meta["name"])
        keep = self.admitted(ref, str((body.get("spec") or {}).get("policy", "")))
        parsed = self.specs.parsed(ref, body, keep=keep)
        if isinstance(parsed, SpecError):
            raise parsed
        return parsed

    def body_of(self, ref: KeyRef) -> dict[str, Any] | None:
        found = self.bodies.get(ref)
        return None if found is None else dict(json.loads(found))

    def status_of(self, ref: KeyRef, body: dict[str, Any]) -> dict[str, Any]:
        """The key's status as last written: the operator's own write until its echo."""
        found = self.written_status.get(ref)
        return found[1] if found is not None else (body.get("status") or {})

    def resource_version(self, ref: KeyRef, body: dict[str, Any]) -> str:
        """The newest resourceVersion known: the status write's until its echo, else the body's."""
        found = self.written_status.get(ref)
        return found[0] if found and found[0] else str(body["metadata"]["resourceVersion"])

    def forget_written_status(self, ref: KeyRef) -> None:
        """A status write refused as stale: the next reconcile reads the key from the API."""
        self.written_status.pop(ref, None)
        self.bodies.pop(ref, None)

    def wrote_status(self, ref: KeyRef, written: dict[str, Any]) -> None:
        """The key as the status write returned it: its status until the watch echoes it."""
        rv = str((written.get("metadata") or {}).get("resourceVersion", ""))
        self.written_status[ref] = (rv, written.get("status") or {})
        self.on_status(ref, written.get("status") or {})

    def drop_key(self, ref: KeyRef) -> None:
        self.bodies.pop(ref, None)
        self.on_status(ref, None)
        self.written_status.pop(ref, None)
        self.stale_kms.pop(ref, None)
        self.specs.drop(ref)
        self.echoes.forget_key(ref)
        old = self.key_policy.pop(ref, None)
        if old is not None:
            self.policy_keys[old].discard(ref)
        self.targets.drop(ref)

    # -- projected secrets -----------------------------------------------------------------------

    def put_secret(
        self, body: dict[str, Any], fingerprint: Callable[[bytes], str], prove: Prover
    ) -> KeyRef | None:
        """Record a projected Secret; returns the ApiKey to look at again: its owner, or the
        owner it had if its ownership proof is gone (None: not ours, and never was)."""
        meta = body.get("metadata", {})
        ref = (meta["namespace"], meta["name"])
        found = recorded(body, fingerprint, prove)
        had = self.drop_secret(ref)
        if found is None:
            return had  # e.g. its proof was stripped: its key's status must say so
        self.projected[ref] = found
        self.by_owner[found.owner].add(ref)
        return found.owner

    def is_expected(self, slot: Slot) -> bool:
        """The recorded Secret at ``slot`` is exactly one the operator is writing."""
        return self.echoes.is_expected(slot, self.projected.get(slot))

    def drop_secret(self, ref: KeyRef) -> KeyRef | None:
        old = self.projected.pop(ref, None)
        if old is None:
            return None
        self.by_owner[old.owner].discard(ref)
        return old.owner

    def secrets_of(self, owner: KeyRef) -> list[ProjectedSecret]:
        return [
            self.projected[ref]
            for ref in sorted(self.by_owner.get(owner, ()))
            if ref in self.projected
        ]
