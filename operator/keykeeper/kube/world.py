"""What the operator knows of the cluster between API calls, fed by kopf's watches.

Policies, namespaces, an index of ApiKeys (which policy each names, which
namespaces it asks for by name and which selectors it uses), and every Secret
keykeeper projected (with HMAC fingerprints of their data, never the data). A Secret
counts as projected only with a valid ownership proof (see ``projection``): one with
forged labels is not recorded, so it queues nothing and costs nothing. The
reconciler reads this instead of listing, so a key that nothing touches costs no API
call; it re-reads the objects it writes.
"""

from __future__ import annotations

import json
from collections import OrderedDict, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from keykeeper.api import labels, timestamps
from keykeeper.api.models import (
    ApiKeySpec,
    KeyPolicySpec,
    LabelSelector,
    Phase,
    SecretType,
    parse_apikey_spec,
    parse_policy_spec,
)
from keykeeper.core.authz import NamespaceInfo
from keykeeper.core.projection import ProjectedSecret, Prover, proven_owner
from keykeeper.core.selectors import matches
from keykeeper.core.store import VersionState
from keykeeper.errors import SpecError
from keykeeper.types import KeyRef

SPEC_CACHE = 8192  # parsed specs kept; a key beyond them is parsed again when reconciled


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
    key_targets: dict[KeyRef, frozenset[str]] = field(default_factory=dict)
    key_selectors: dict[KeyRef, tuple[LabelSelector, ...]] = field(default_factory=dict)
    projected: dict[KeyRef, ProjectedSecret] = field(default_factory=dict)
    by_owner: dict[KeyRef, set[KeyRef]] = field(default_factory=lambda: defaultdict(set))
    # what the last reconcile of each key saw of it (see ``key_signature``)
    key_seen: dict[KeyRef, tuple[Any, ...]] = field(default_factory=dict)
    # projected Secrets the operator is writing, by content: their watch events can
    # arrive before the write's response (and its resourceVersion) does
    expected: dict[KeyRef, tuple[Any, ...]] = field(default_factory=dict)
    # each key's spec, parsed once per (uid, generation): the watch event and the
    # reconcile that follows it share one parse
    # (bounded: a parsed spec is ~3 KB, and 100,000 of them would be a third of a GiB)
    specs: OrderedDict[KeyRef, tuple[str, int, ApiKeySpec | SpecError]] = field(
        default_factory=OrderedDict
    )
    # keys whose envelopes are still under a KMS key their policy no longer names
    stale_kms: dict[KeyRef, str] = field(default_factory=dict)
    # each ApiKey as the watch last delivered it (no managedFields): what a reconcile
    # starts from, so it costs no GET; and the status each key was last written with,
    # until the watch echoes it (a reconcile before the echo compares against this)
    # (kept as compact JSON: ~1 KB a key, where the dict was ~7 KB)
    bodies: dict[KeyRef, bytes] = field(default_factory=dict)
    written_status: dict[KeyRef, tuple[str, dict[str, Any]]] = field(default_factory=dict)
    # what the metrics count of each key: its phase, when its current version was made
    # and when it rotates next (epoch seconds), from the status last seen or written
    facts: dict[KeyRef, KeyFacts] = field(default_factory=dict)
    # keys whose new generation the watch delivered and no reconcile finished yet:
    # (generation, loop time it arrived), for the projection-lag metric
    changed_at: dict[KeyRef, tuple[int, float]] = field(default_factory=dict)
    generations: dict[KeyRef, int] = field(default_factory=dict)

    # -- echoes of the operator's own writes ---------------------------------------------------
    # A watch event can arrive before the response of the write that caused it, so echoes
    # are recognised by what they carry, not by resourceVersion: an ApiKey event by what
    # its reconcile depends on (``key_signature``), a projected Secret by its content.

    def saw_key(self, ref: KeyRef, body: dict[str, Any]) -> None:
        self.key_seen[ref] = key_signature(body)

    def note_generation(self, ref: KeyRef, body: dict[str, Any], now: float) -> None:
        """A watch event: a generation not seen before starts the projection-lag clock
        (the start-up list sets none: what was there before is no change)."""
        generation = int(body.get("metadata", {}).get("generation") or 0)
        if self.generations.get(ref) != generation:
            self.generations[ref] = generation
            self.changed_at[ref] = (generation, now)

    def key_changed(self, ref: KeyRef, body: dict[str, Any]) -> bool:
        """Whether an ApiKey event carries anything its last reconcile did not see."""
        return self.key_seen.get(ref) != key_signature(body)

    # -- namespaces ----------------------------------------------------------------------------

    def put_namespace(self, body: dict[str, Any]) -> NamespaceInfo | None:
        """Record a namespace; what it was before if authorization sees a change, else None."""
        meta = body.get("metadata", {})
        info = NamespaceInfo(
            meta["name"],
            dict(meta.get("labels") or {}),
            terminating=bool(meta.get("deletionTimestamp"))
            or body.get("status", {}).get("phase") == "Terminating",
        )
        before = self.namespaces.get(info.name)
        self.namespaces[info.name] = info
        if before == info:
            return None
        return before or NamespaceInfo(info.name, {}, terminating=True)

    def drop_namespace(self, name: str) -> NamespaceInfo | None:
        return self.namespaces.pop(name, None)

    def keys_affected_by_namespace(self, name: str, before: NamespaceInfo) -> set[KeyRef]:
        """Keys whose targets a change of ``name`` (from ``before``) can add or remove:
        keys in it, keys naming it, and keys whose selectors match its old or new labels."""
        after = self.namespaces.get(name)
        label_sets = [before.labels, after.labels if after else {}]
        affected = {
            ref
            for ref in self.key_policy
            if ref[0] == name or name in self.key_targets.get(ref, ())
        }
        for ref, selectors in self.key_selectors.items():
            if any(matches(sel, lbl) for sel in selectors for lbl in label_sets):
                affected.add(ref)
        return affected

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
        if latest:
            kept = {k: v for k, v in meta.items() if k != "managedFields"}
            self.bodies[ref] = json.dumps(
                {**body, "metadata": kept}, separators=(",", ":")
            ).encode()
            written = self.written_status.get(ref)
            if written is not None and (
                written[0] == meta.get("resourceVersion") or written[1] == body.get("status")
            ):
                self.written_status.pop(ref, None)  # the echo of the last status write
            if ref not in self.written_status:
                self.facts[ref] = key_facts(body.get("status") or {})
        spec_body = body.get("spec") or {}
        policy = str(spec_body.get("policy", ""))
        old = self.key_policy.get(ref)
        if old != policy:
            if old is not None:
                self.policy_keys[old].discard(ref)
            self.policy_keys[policy].add(ref)
        self.key_policy[ref] = policy
        parsed = self._parse(ref, body)
        projections = parsed.projections if isinstance(parsed, ApiKeySpec) else ()
        self.key_targets[ref] = frozenset(p.namespace for p in projections if p.namespace)
        selectors = tuple(p.namespace_selector for p in projections if p.namespace_selector)
        if selectors:
            self.key_selectors[ref] = selectors
        else:
            self.key_selectors.pop(ref, None)
        return ref

    def spec_of(self, body: dict[str, Any]) -> ApiKeySpec:
        """The key's parsed spec (``SpecError`` if it is invalid), parsed once per generation."""
        meta = body.get("metadata", {})
        parsed = self._parse((meta["namespace"], meta["name"]), body)
        if isinstance(parsed, SpecError):
            raise parsed
        return parsed

    def _parse(self, ref: KeyRef, body: dict[str, Any]) -> ApiKeySpec | SpecError:
        meta = body.get("metadata", {})
        uid, generation = str(meta.get("uid", "")), int(meta.get("generation") or 0)
        cached = self.specs.get(ref)
        if cached is not None:
            self.specs.move_to_end(ref)
        if cached is not None and cached[:2] == (uid, generation) and generation:
            return cached[2]
        try:
            parsed: ApiKeySpec | SpecError = parse_apikey_spec(body.get("spec"))
        except SpecError as exc:
            parsed = exc
        self.specs[ref] = (uid, generation, parsed)
        self.specs.move_to_end(ref)
        while len(self.specs) > SPEC_CACHE:
            self.specs.popitem(last=False)
        return parsed

    def body_of(self, ref: KeyRef) -> dict[str, Any] | None:
        found = self.bodies.get(ref)
        return None if found is None else dict(json.loads(found))

    def status_of(self, ref: KeyRef, body: dict[str, Any]) -> dict[str, Any]:
        """The key's status as last written: the operator's own write until its echo."""
        found = self.written_status.get(ref)
        return found[1] if found is not None else (body.get("status") or {})

    def wrote_status(self, ref: KeyRef, written: dict[str, Any]) -> None:
        """The key as the status write returned it: its status until the watch echoes it."""
        rv = str((written.get("metadata") or {}).get("resourceVersion", ""))
        self.written_status[ref] = (rv, written.get("status") or {})
        self.facts[ref] = key_facts(written.get("status") or {})

    def drop_key(self, ref: KeyRef) -> None:
        self.bodies.pop(ref, None)
        self.facts.pop(ref, None)
        self.changed_at.pop(ref, None)
        self.generations.pop(ref, None)
        self.written_status.pop(ref, None)
        self.stale_kms.pop(ref, None)
        self.specs.pop(ref, None)
        self.key_seen.pop(ref, None)
        old = self.key_policy.pop(ref, None)
        if old is not None:
            self.policy_keys[old].discard(ref)
        self.key_targets.pop(ref, None)
        self.key_selectors.pop(ref, None)

    # -- projected secrets -----------------------------------------------------------------------

    def put_secret(
        self, body: dict[str, Any], fingerprint: Callable[[bytes], str], prove: Prover
    ) -> KeyRef | None:
        """Record a projected Secret; returns the ApiKey to look at again: its owner, or the
        owner it had if its ownership proof is gone (None: not ours, and never was)."""
        import base64

        meta = body.get("metadata", {})
        ref = (meta["namespace"], meta["name"])
        proven = proven_owner(body, prove)
        if proven is None:
            # e.g. its proof was stripped: no longer ours, and its key's status must say so
            return self.drop_secret(ref)
        owner, owner_uid = proven
        annotations = dict(meta.get("annotations") or {})
        self.drop_secret(ref)
        self.projected[ref] = ProjectedSecret(
            namespace=ref[0],
            name=ref[1],
            owner=owner,
            owner_uid=owner_uid,
            version=annotations.get(labels.VERSION, ""),
            fingerprints={
                k: fingerprint(base64.b64decode(v)) for k, v in (body.get("data") or {}).items()
            },
            annotations=annotations,
            secret_type=body.get("type", SecretType.OPAQUE),
            uid=meta.get("uid", ""),
        )
        self.by_owner[owner].add(ref)
        return owner

    def expect_secret(self, slot: KeyRef, signature: tuple[Any, ...]) -> None:
        self.expected[slot] = signature

    def is_expected(self, slot: KeyRef) -> bool:
        """The recorded Secret at ``slot`` is exactly one the operator is writing."""
        there = self.projected.get(slot)
        wanted = self.expected.get(slot)
        if there is None or wanted is None or secret_signature(there) != wanted:
            return False
        del self.expected[slot]
        return True

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


class KeyFacts(NamedTuple):
    phase: str
    version_created: float | None  # epoch seconds
    next_rotation: float | None


PHASES = frozenset(p.value for p in Phase)


def key_facts(status: dict[str, Any]) -> KeyFacts:
    """What the metrics need of a key's status (malformed times count as absent). The
    phase becomes a metric label: only the closed set gets through, so whoever can
    write a status cannot mint label values ("Pending": no status yet)."""
    created = None
    for entry in status.get("versions") or ():
        if isinstance(entry, dict) and entry.get("state") == VersionState.CURRENT:
            created = timestamps.epoch(entry.get("createdAt"))
    phase = status.get("phase")
    shown = (
        "Pending"
        if not phase
        else phase
        if isinstance(phase, str) and phase in PHASES
        else "Unknown"
    )
    return KeyFacts(shown, created, timestamps.epoch(status.get("nextRotationAt")))


def key_signature(body: dict[str, Any]) -> tuple[Any, ...]:
    """What a reconcile of an ApiKey depends on in the object itself: its identity, its
    spec (generation), its annotations (rotation requests), deletion, and keykeeper's
    finalizer. Status and resourceVersion are not in it: the watch echo of the
    operator's own finalizer or status write changes nothing here, whenever it arrives."""
    meta = body.get("metadata") or {}
    return (
        meta.get("uid"),
        meta.get("generation"),
        tuple(sorted((meta.get("annotations") or {}).items())),
        bool(meta.get("deletionTimestamp")),
        labels.FINALIZER in (meta.get("finalizers") or []),
    )


def secret_signature(secret: ProjectedSecret) -> tuple[Any, ...]:
    """What makes a projected Secret the one a key wants (not its resourceVersion)."""
    return (
        secret.owner,
        secret.owner_uid,
        secret.version,
        tuple(sorted(secret.fingerprints.items())),
        secret.secret_type,
    )
