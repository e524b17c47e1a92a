"""Who may receive a key: the authorization rule of DESIGN.md §2, default deny.

A projection of ApiKey ``ns/name`` into namespace ``T`` happens only if all hold:
1. the key's namespace is selected by the policy's ``sourceNamespaces``;
2. ``T`` is the key's own namespace and ``allowOwnNamespace`` is true, or ``T`` is
   selected by ``targetNamespaces`` (names, or a selector on T's *current* labels);
3. ``T`` exists and is not terminating;
4. the key is in a phase that projects (Active, RotationPending, Rotated);
5. if ``T`` is not the key's own namespace: ``T`` consents to keys from the key's
   namespace (annotation ``keykeeper.dev/accept-from``) when it carries that annotation
   or the policy sets ``requireConsent``, and the Secret name and data key are among
   the policy's ``secretNames`` and ``dataKeys`` when it lists them (K6: a tenant
   cannot plant or squat a name in a namespace that did not ask for it).
And never, whatever a policy says: the operator's own namespace (where the master key
and every envelope live) is neither a source nor a target (``KeyContext.reserved``).

Everything here is pure: the caller passes the policy and the namespaces as it sees
them now, and nothing a tenant writes into a value or a sealed envelope is consulted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from keykeeper.api import labels
from keykeeper.api.models import (
    PROJECTING_PHASES,
    ApiKeySpec,
    KeyPolicySpec,
    NamespaceSelection,
    Phase,
    Projection,
    TargetSelection,
)
from keykeeper.api.reasons import Reason
from keykeeper.core.selectors import matches
from keykeeper.shaping.shapes import PLAIN, Shape, shape_for

MAX_ACCEPTED = 256  # entries of an accept-from annotation read; the rest are ignored


@dataclass(frozen=True)
class NamespaceInfo:
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    terminating: bool = False
    # source namespaces its accept-from annotation names ("*": any); None: no annotation
    accepts: frozenset[str] | None = None


def accepted_sources(annotations: Mapping[str, str]) -> frozenset[str] | None:
    """The namespace's ``keykeeper.dev/accept-from``: comma-separated source namespaces
    or ``*``. Entries are compared exactly, so a malformed one admits nothing."""
    text = annotations.get(labels.ACCEPT_FROM)
    if text is None:
        return None
    entries = (part.strip() for part in text.split(",", MAX_ACCEPTED)[:MAX_ACCEPTED])
    return frozenset(e for e in entries if e)


def consents(target: NamespaceInfo, source: str, policy: KeyPolicySpec) -> bool:
    """Whether ``target`` takes keys from namespace ``source`` (rule 5's consent)."""
    required = policy.target_namespaces is not None and policy.target_namespaces.require_consent
    if target.accepts is None:
        return not required
    return "*" in target.accepts or source in target.accepts


def name_allowed(patterns: Iterable[str], name: str) -> bool:
    """``name`` is one of ``patterns`` (exact, or a prefix ending in ``*``); none: any."""
    listed = tuple(patterns)
    return not listed or any(
        name.startswith(p[:-1]) if p.endswith("*") else name == p for p in listed
    )


@dataclass(frozen=True)
class KeyContext:
    """What authorization needs of an ApiKey: where it lives and its phase."""

    namespace: NamespaceInfo
    phase: Phase
    reserved: frozenset[str] = frozenset()  # namespaces never a source or a target


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str
    message: str


@dataclass(frozen=True)
class Target:
    """One requested projection, resolved to a namespace."""

    namespace: str
    secret_name: str
    key: str
    selected: bool = False  # expanded from a namespaceSelector, not named by the author
    shape: Shape = PLAIN  # what the Secret holds: one value, the key's fields, a template


def admits_source(key: KeyContext, policy: KeyPolicySpec) -> bool:
    """Rule 1: the policy may be used at all by a key in this namespace."""
    return key.namespace.name not in key.reserved and selects(
        policy.source_namespaces, key.namespace
    )


def selects(selection: NamespaceSelection, namespace: NamespaceInfo) -> bool:
    if namespace.name in selection.names:
        return True
    return selection.selector is not None and matches(selection.selector, namespace.labels)


def authorize(
    key: KeyContext,
    policy: KeyPolicySpec | None,
    target_name: str,
    target: NamespaceInfo | None,
    wanted: Target | None = None,
) -> Decision:
    """Decide one projection. ``target`` is None when the namespace does not exist;
    ``wanted`` (the Secret name and data key asked for) is held to the policy's names."""
    if policy is None:
        return Decision(
            False, Reason.POLICY_NOT_FOUND, "the key's KeyPolicy does not exist or is invalid"
        )
    if not admits_source(key, policy):
        return Decision(
            False,
            Reason.SOURCE_NOT_ALLOWED,
            f"the policy does not admit keys from namespace {key.namespace.name}",
        )
    if key.phase not in PROJECTING_PHASES:
        return Decision(
            False, Reason.KEY_NOT_PROJECTING, f"the key is {key.phase}, which does not project"
        )
    if target_name in key.reserved:
        return Decision(False, Reason.NOT_AUTHORIZED, f"{target_name} is keykeeper's own namespace")
    if target is None:
        return Decision(
            False, Reason.NAMESPACE_NOT_FOUND, f"namespace {target_name} does not exist"
        )
    if target.terminating:
        return Decision(
            False, Reason.NAMESPACE_TERMINATING, f"namespace {target_name} is terminating"
        )
    allowed_targets = policy.target_namespaces
    own_allowed = allowed_targets is None or allowed_targets.allow_own_namespace
    if target.name == key.namespace.name and own_allowed:
        return Decision(True, Reason.AUTHORIZED, "the key's own namespace")
    if allowed_targets is None or not selects(allowed_targets, target):
        return Decision(
            False, Reason.NOT_AUTHORIZED, f"the policy does not allow projection into {target_name}"
        )
    return _accepted(key, policy, allowed_targets, target, wanted)


def _accepted(
    key: KeyContext,
    policy: KeyPolicySpec,
    allowed_targets: TargetSelection,
    target: NamespaceInfo,
    wanted: Target | None,
) -> Decision:
    """Rule 5, for a policy target other than the key's own namespace."""
    target_name = target.name
    if not consents(target, key.namespace.name, policy):
        return Decision(
            False,
            Reason.TARGET_NOT_CONSENTING,
            f"namespace {target_name} does not accept keys from {key.namespace.name} "
            f"(annotation {labels.ACCEPT_FROM})",
        )
    if wanted is not None and not name_allowed(allowed_targets.secret_names, wanted.secret_name):
        return Decision(
            False,
            Reason.SECRET_NAME_NOT_ALLOWED,
            f"the policy does not allow the Secret name {wanted.secret_name} outside the "
            "key's own namespace",
        )
    refused = next(
        (
            key
            for key in (wanted.shape.data_keys(wanted.key) if wanted is not None else ())
            if not name_allowed(allowed_targets.data_keys, key)
        ),
        None,
    )
    if refused is not None:
        return Decision(
            False,
            Reason.SECRET_NAME_NOT_ALLOWED,
            f"the policy does not allow the data key {refused} outside the key's own namespace",
        )
    return Decision(True, Reason.AUTHORIZED, f"namespace {target_name} is a policy target")


def reachable(key: KeyContext, policy: KeyPolicySpec | None, namespace: NamespaceInfo) -> bool:
    """Whether the policy could ever authorize ``namespace`` for this key (whatever its
    phase): the only namespaces a ``namespaceSelector`` may expand to. A selector over
    namespaces the policy does not reach expands to nothing, so neither status, nor a
    condition, nor an Event counts namespaces (or labels) the tenant may not list."""
    if policy is None or not admits_source(key, policy) or namespace.name in key.reserved:
        return False
    allowed = policy.target_namespaces
    if namespace.name == key.namespace.name and (allowed is None or allowed.allow_own_namespace):
        return True
    return (
        allowed is not None
        and selects(allowed, namespace)
        and consents(namespace, key.namespace.name, policy)
    )


def requested_targets(
    spec: ApiKeySpec,
    key_name: str,
    namespaces: Iterable[NamespaceInfo],
    expands_to: Callable[[NamespaceInfo], bool] = lambda _: True,
    shape_of: Callable[[Projection], Shape] = lambda _: PLAIN,
) -> list[tuple[Target, Decision | None]]:
    """Resolve ``spec.projections`` to concrete targets, in order, without duplicates.

    A selector projection expands to every existing namespace it matches now that
    ``expands_to`` admits (``plan``: those the policy reaches). A namespace named
    outright stays as asked, to be authorized or denied by name. A second request for
    the same namespace and Secret name is reported, not applied twice.
    """
    existing = sorted((ns for ns in namespaces if expands_to(ns)), key=lambda ns: ns.name)
    seen: set[tuple[str, str]] = set()
    out: list[tuple[Target, Decision | None]] = []
    for projection in spec.projections:
        if projection.namespace is not None:
            names = [projection.namespace]
        else:
            assert projection.namespace_selector is not None
            selector = projection.namespace_selector
            names = [ns.name for ns in existing if matches(selector, ns.labels)]
        shape = shape_of(projection)
        for name in names:
            target = Target(
                name,
                projection.secret_name or key_name,
                projection.key,
                selected=projection.namespace is None,
                shape=shape,
            )
            slot = (target.namespace, target.secret_name)
            if slot in seen:
                duplicate = Decision(
                    False,
                    Reason.DUPLICATE_TARGET,
                    f"{name}/{target.secret_name} is requested twice",
                )
                out.append((target, duplicate))
                continue
            seen.add(slot)
            out.append((target, None))
    return out


def plan(
    key: KeyContext,
    spec: ApiKeySpec,
    key_name: str,
    policy: KeyPolicySpec | None,
    namespaces: Mapping[str, NamespaceInfo],
    fields: tuple[str, ...] | None = None,
) -> list[tuple[Target, Decision]]:
    """Every requested target with its decision: the whole of what the key may reach.
    ``fields``: the key's field names as stored (a sealed value's are in its seal);
    None: as the spec declares them."""
    names = spec.source.fields if fields is None else fields

    def shape_of(projection: Projection) -> Shape:
        return shape_for(projection, policy, names) if policy else PLAIN

    return [
        (
            target,
            early
            or authorize(key, policy, target.namespace, namespaces.get(target.namespace), target),
        )
        for target, early in requested_targets(
            spec, key_name, namespaces.values(), lambda ns: reachable(key, policy, ns), shape_of
        )
    ]
