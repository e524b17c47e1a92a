"""What the operator knows of the cluster between API calls, fed by kopf's watches.

Policies, namespaces, an index of ApiKeys (which policy each names and which
namespaces it asks for), and every Secret keykeeper manages (with HMAC fingerprints
of their data, never the data). The reconciler reads this instead of listing, so a
key that nothing touches costs no API call; it re-reads the objects it writes.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from keykeeper import labels
from keykeeper.api import ApiKeySpec, KeyPolicySpec, parse_apikey_spec, parse_policy_spec
from keykeeper.authz import NamespaceInfo
from keykeeper.errors import SpecError

KeyRef = tuple[str, str]  # (namespace, name)


@dataclass(frozen=True)
class PolicyView:
    name: str
    spec: KeyPolicySpec | None
    error: str = ""
    generation: int = 0
    body: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class ProjectedSecret:
    """A Secret keykeeper projected, as the watch last saw it."""

    namespace: str
    name: str
    owner: KeyRef
    version: str
    fingerprints: dict[str, str]  # data key -> HMAC fingerprint of its value
    annotations: dict[str, str]
    secret_type: str
    uid: str


@dataclass
class World:
    namespaces: dict[str, NamespaceInfo] = field(default_factory=dict)
    policies: dict[str, PolicyView] = field(default_factory=dict)
    key_policy: dict[KeyRef, str] = field(default_factory=dict)
    policy_keys: dict[str, set[KeyRef]] = field(default_factory=lambda: defaultdict(set))
    key_targets: dict[KeyRef, frozenset[str]] = field(default_factory=dict)
    key_selects: set[KeyRef] = field(default_factory=set)
    projected: dict[KeyRef, ProjectedSecret] = field(default_factory=dict)
    by_owner: dict[KeyRef, set[KeyRef]] = field(default_factory=lambda: defaultdict(set))
    own_writes: dict[tuple[str, str, str], str] = field(default_factory=dict)

    # -- echoes of the operator's own writes ---------------------------------------------------

    def note_own_write(self, kind: str, ref: KeyRef, written: dict[str, Any]) -> None:
        """Remember the resourceVersion a write produced, so its watch echo is not work."""
        version = written.get("metadata", {}).get("resourceVersion")
        if version:
            self.own_writes[(kind, *ref)] = version

    def is_own_echo(self, kind: str, ref: KeyRef, body: dict[str, Any]) -> bool:
        version = body.get("metadata", {}).get("resourceVersion")
        if version is not None and self.own_writes.get((kind, *ref)) == version:
            del self.own_writes[(kind, *ref)]
            return True
        return False

    # -- namespaces ----------------------------------------------------------------------------

    def put_namespace(self, body: dict[str, Any]) -> bool:
        """Record a namespace; True if what authorization sees of it changed."""
        meta = body.get("metadata", {})
        info = NamespaceInfo(
            meta["name"],
            dict(meta.get("labels") or {}),
            terminating=bool(meta.get("deletionTimestamp"))
            or body.get("status", {}).get("phase") == "Terminating",
        )
        changed = self.namespaces.get(info.name) != info
        self.namespaces[info.name] = info
        return changed

    def drop_namespace(self, name: str) -> bool:
        return self.namespaces.pop(name, None) is not None

    def keys_affected_by_namespace(self, name: str) -> set[KeyRef]:
        return {
            ref
            for ref in self.key_policy
            if ref[0] == name or ref in self.key_selects or name in self.key_targets.get(ref, ())
        }

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
        return view

    def drop_policy(self, name: str) -> None:
        self.policies.pop(name, None)

    def keys_of_policy(self, name: str) -> set[KeyRef]:
        return set(self.policy_keys.get(name, ()))

    # -- keys ----------------------------------------------------------------------------------

    def put_key(self, body: dict[str, Any]) -> KeyRef:
        meta = body.get("metadata", {})
        ref = (meta["namespace"], meta["name"])
        spec_body = body.get("spec") or {}
        policy = str(spec_body.get("policy", ""))
        old = self.key_policy.get(ref)
        if old != policy:
            if old is not None:
                self.policy_keys[old].discard(ref)
            self.policy_keys[policy].add(ref)
        self.key_policy[ref] = policy
        try:
            spec: ApiKeySpec | None = parse_apikey_spec(spec_body)
        except SpecError:
            spec = None
        projections = spec.projections if spec else ()
        self.key_targets[ref] = frozenset(p.namespace for p in projections if p.namespace)
        if any(p.namespace_selector is not None for p in projections):
            self.key_selects.add(ref)
        else:
            self.key_selects.discard(ref)
        return ref

    def drop_key(self, ref: KeyRef) -> None:
        old = self.key_policy.pop(ref, None)
        if old is not None:
            self.policy_keys[old].discard(ref)
        self.key_targets.pop(ref, None)
        self.key_selects.discard(ref)

    # -- projected secrets -----------------------------------------------------------------------

    def put_secret(
        self, body: dict[str, Any], fingerprint: Callable[[bytes], str]
    ) -> KeyRef | None:
        """Record a projected Secret; returns the ApiKey it belongs to."""
        import base64

        meta = body.get("metadata", {})
        lbl = meta.get("labels") or {}
        if lbl.get(labels.ROLE) != labels.ROLE_PROJECTION:
            return None
        owner = (lbl.get(labels.APIKEY_NAMESPACE, ""), lbl.get(labels.APIKEY_NAME, ""))
        ref = (meta["namespace"], meta["name"])
        annotations = dict(meta.get("annotations") or {})
        self.drop_secret(ref)
        self.projected[ref] = ProjectedSecret(
            namespace=ref[0],
            name=ref[1],
            owner=owner,
            version=annotations.get(labels.VERSION, ""),
            fingerprints={
                k: fingerprint(base64.b64decode(v)) for k, v in (body.get("data") or {}).items()
            },
            annotations=annotations,
            secret_type=body.get("type", "Opaque"),
            uid=meta.get("uid", ""),
        )
        self.by_owner[owner].add(ref)
        return owner

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
