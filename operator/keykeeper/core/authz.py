"""Who may receive a key: the authorization rule of DESIGN.md §2, default deny.

A projection of ApiKey ``ns/name`` into namespace ``T`` happens only if all hold:
1. the key's namespace is selected by the policy's ``sourceNamespaces``;
2. ``T`` is the key's own namespace and ``allowOwnNamespace`` is true, or ``T`` is
   selected by ``targetNamespaces`` (names, or a selector on T's *current* labels);
3. ``T`` exists and is not terminating;
4. the key is in a phase that projects (Active, RotationPending, Rotated).
And never, whatever a policy says: the operator's own namespace (where the master key
and every envelope live) is neither a source nor a target (``KeyContext.reserved``).

Everything here is pure: the caller passes the policy and the namespaces as it sees
them now, and nothing a tenant writes into a value or a sealed envelope is consulted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from keykeeper.api.models import (
    PROJECTING_PHASES,
    ApiKeySpec,
    KeyPolicySpec,
    NamespaceSelection,
    Phase,
)
from keykeeper.api.reasons import Reason
from keykeeper.core.selectors import matches


@dataclass(frozen=True)
class NamespaceInfo:
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    terminating: bool = False


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
) -> Decision:
    """Decide one projection. ``target`` is None when the namespace does not exist."""
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
    if allowed_targets is not None and selects(allowed_targets, target):
        return Decision(True, Reason.AUTHORIZED, f"namespace {target_name} is a policy target")
    return Decision(
        False, Reason.NOT_AUTHORIZED, f"the policy does not allow projection into {target_name}"
    )


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
    return allowed is not None and selects(allowed, namespace)


def requested_targets(
    spec: ApiKeySpec,
    key_name: str,
    namespaces: Iterable[NamespaceInfo],
    expands_to: Callable[[NamespaceInfo], bool] = lambda _: True,
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
        for name in names:
            target = Target(
                name,
                projection.secret_name or key_name,
                projection.key,
                selected=projection.namespace is None,
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
) -> list[tuple[Target, Decision]]:
    """Every requested target with its decision: the whole of what the key may reach."""
    return [
        (
            target,
            early or authorize(key, policy, target.namespace, namespaces.get(target.namespace)),
        )
        for target, early in requested_targets(
            spec, key_name, namespaces.values(), lambda ns: reachable(key, policy, ns)
        )
    ]
