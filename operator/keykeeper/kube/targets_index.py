"""Which ApiKeys a namespace's change concerns, without looking at every key (K4).

A namespace that appears, goes, is relabelled, starts terminating or changes its
consent can add or remove targets of: the keys in it, the keys naming it, and the keys
whose ``namespaceSelector`` matches its labels before or after (a selector matching
both still counts: the policy's own target selector may see the change). Evaluating
every key's selectors for every namespace event stalled the event loop (11.5 s for 74
namespaces with crafted keys, past the leader's renew deadline), and scanning every
key for the ones in or naming the namespace is O(keys) per event. So this index
answers from the namespace's labels:

* a selector matches only labels that meet each of its requirements, so it is indexed
  under one *positive* requirement (the first of: a ``matchLabels`` pair, an ``In``
  with its values as pairs, an ``Exists`` key); a namespace's labels then name every
  selector that can match them, and only those are evaluated;
* a selector with no positive requirement (``{}``, only ``NotIn``/``DoesNotExist``)
  may match anything: it is evaluated only if the key's policy can target the
  namespace at all (its ``targetNamespaces`` name or select it), which the world
  answers once per policy per event; a tenant's crafted ``NotIn`` lists under a
  policy that reaches nowhere else cost a dict lookup each, not an evaluation.

The answer is the set the full scan gives (a property test holds them equal).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import TypeVar

from keykeeper.api.models import LabelSelector
from keykeeper.core.authz import NamespaceInfo
from keykeeper.core.selectors import matches
from keykeeper.types import KeyRef

_K = TypeVar("_K")

Anchor = tuple[str, str | None]  # (label, value); value None: the label only (Exists)


def anchors(selector: LabelSelector) -> tuple[Anchor, ...]:
    """Where ``selector`` is indexed: one positive requirement as label pairs (any
    namespace it matches has one of them), or () when it has none."""
    for label, value in selector.match_labels.items():
        return ((label, value),)
    for requirement in selector.match_expressions:
        if requirement.operator == "In":
            return tuple((requirement.key, v) for v in requirement.values)
    for requirement in selector.match_expressions:
        if requirement.operator == "Exists":
            return ((requirement.key, None),)
    return ()


class TargetsIndex:
    def __init__(self) -> None:
        self.named: dict[KeyRef, frozenset[str]] = {}  # namespaces a key names outright
        self.selectors: dict[KeyRef, tuple[LabelSelector, ...]] = {}
        self._in: dict[str, set[KeyRef]] = defaultdict(set)  # namespace -> keys in it
        self._naming: dict[str, set[KeyRef]] = defaultdict(set)  # namespace -> keys naming it
        self._anchored: dict[Anchor, set[KeyRef]] = defaultdict(set)
        self._unanchored: set[KeyRef] = set()  # a selector that may match any labels

    def put(self, ref: KeyRef, named: Iterable[str], selectors: tuple[LabelSelector, ...]) -> None:
        self.drop(ref)
        self._in[ref[0]].add(ref)
        self.named[ref] = frozenset(named)
        for namespace in self.named[ref]:
            self._naming[namespace].add(ref)
        if not selectors:
            return
        self.selectors[ref] = selectors
        for selector in selectors:
            found = anchors(selector)
            for anchor in found:
                self._anchored[anchor].add(ref)
            if not found:
                self._unanchored.add(ref)

    def drop(self, ref: KeyRef) -> None:
        _discard(self._in, ref[0], ref)
        for namespace in self.named.pop(ref, ()):
            _discard(self._naming, namespace, ref)
        for selector in self.selectors.pop(ref, ()):
            for anchor in anchors(selector):
                _discard(self._anchored, anchor, ref)
        self._unanchored.discard(ref)

    def keys(self) -> Iterable[KeyRef]:
        return self.named.keys()

    def keys_in(self, namespace: str) -> set[KeyRef]:
        return set(self._in.get(namespace, ()))

    def affected(
        self,
        name: str,
        before: NamespaceInfo | None,
        after: NamespaceInfo | None,
        reaches: Callable[[KeyRef], bool] = lambda _: True,
    ) -> set[KeyRef]:
        """Keys whose targets the change of namespace ``name`` from ``before`` to ``after``
        (None: absent) can add or remove. Only labels it had as a possible target count:
        a namespace that did not exist, or is terminating, has none (not an empty set
        that ``NotIn`` matches). A selector is evaluated only for a key whose policy
        ``reaches`` the namespace: it expands only inside the policy's targets."""
        live = [i.labels for i in (before, after) if i is not None and not i.terminating]
        out = set(self._in.get(name, ())) | set(self._naming.get(name, ()))
        candidates = set(self._unanchored)
        for labels in live:
            for label, value in labels.items():
                candidates |= self._anchored.get((label, value), set())
                candidates |= self._anchored.get((label, None), set())
        for ref in candidates - out:
            selectors = self.selectors.get(ref, ())
            if reaches(ref) and any(matches(s, labels) for s in selectors for labels in live):
                out.add(ref)
        return out


def _discard(index: dict[_K, set[KeyRef]], key: _K, ref: KeyRef) -> None:
    refs = index.get(key)
    if refs is not None:
        refs.discard(ref)
        if not refs:
            del index[key]
