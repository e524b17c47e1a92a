"""What the metrics count of each key, kept between scrapes: its phase, when its current
version was made and when it rotates next (from the status last seen or written), and
when a new generation arrived (for the projection-lag histogram).

The world calls ``status_seen`` whenever it learns a key's status (its ``on_status``
hook), so a scrape reads these small tuples instead of decoding 100,000 bodies.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from keykeeper.api import timestamps
from keykeeper.api.labels import label_value
from keykeeper.api.models import Phase
from keykeeper.core.authz import NamespaceInfo
from keykeeper.core.store import VersionState
from keykeeper.runtime.keyseries import KeySeries
from keykeeper.types import Body, KeyRef

PHASES = frozenset(p.value for p in Phase)


class KeyFacts(NamedTuple):
    phase: str
    version_created: float | None  # epoch seconds
    next_rotation: float | None
    expiry: str = ""  # "", Expiring or Expired: what its conditions say of its value
    unprojected: bool = False  # targets it is authorized for but could not be written to
    expires_at: float | None = None  # epoch seconds: status.valueExpiresAt


def _conditions(status: Mapping[str, Any]) -> dict[str, tuple[object, object]]:
    return {
        str(c.get("type")): (c.get("status"), c.get("reason"))
        for c in status.get("conditions") or ()
        if isinstance(c, dict)
    }


def key_facts(status: Mapping[str, Any]) -> KeyFacts:
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
    said = _conditions(status)
    expiry = next((t for t in ("Expired", "Expiring") if said.get(t, ("",))[0] == "True"), "")
    targets = status.get("targets")
    failed = targets.get("failed") if isinstance(targets, dict) else 0
    unprojected = isinstance(failed, int) and failed > 0  # denied targets are no failure
    return KeyFacts(
        shown,
        created,
        timestamps.epoch(status.get("nextRotationAt")),
        expiry,
        unprojected,
        timestamps.epoch(status.get("valueExpiresAt")),
    )


@dataclass
class KeyFactsBook:
    facts: dict[KeyRef, KeyFacts] = field(default_factory=dict)
    # keys whose new generation the watch delivered and no reconcile finished yet:
    # (generation, loop time it arrived)
    changed_at: dict[KeyRef, tuple[int, float]] = field(default_factory=dict)
    generations: dict[KeyRef, int] = field(default_factory=dict)
    # the value of ``owner_label`` on each key that has one (the per-key series' owner);
    # "" keeps none
    owner_label: str = ""
    owners: dict[KeyRef, str] = field(default_factory=dict)
    owner_from_namespace: bool = False  # the label is read on the key's Namespace instead

    def status_seen(self, ref: KeyRef, status: Mapping[str, Any] | None) -> None:
        """The world's ``on_status`` hook: None means the key is gone."""
        if status is None:
            self.facts.pop(ref, None)
            self.changed_at.pop(ref, None)
            self.generations.pop(ref, None)
            self.owners.pop(ref, None)
        else:
            self.facts[ref] = key_facts(status)

    def listed(self, ref: KeyRef, body: Body) -> None:
        """The start-up list: what was there before is no change (no lag clock)."""
        self.generations[ref] = int(body.get("metadata", {}).get("generation") or 0)
        self._owner(ref, body)

    def note_generation(self, ref: KeyRef, body: Body, now: float) -> None:
        """A watch event: a generation not seen before starts the projection-lag clock."""
        generation = int(body.get("metadata", {}).get("generation") or 0)
        self._owner(ref, body)
        if self.generations.get(ref) != generation:
            self.generations[ref] = generation
            self.changed_at[ref] = (generation, now)

    def _owner(self, ref: KeyRef, body: Body) -> None:
        owner = label_value(body.get("metadata", {}).get("labels"), self.owner_label)
        if owner and self.owner_label and not self.owner_from_namespace:
            self.owners[ref] = owner
        else:
            self.owners.pop(ref, None)

    def series(self, namespaces: Mapping[str, NamespaceInfo] | None = None) -> PerKey:
        """The per-key series' keys, copied now (on the loop), made into series later (on
        the scrape's thread); the owner read on each key's Namespace (``namespaces``, the
        world's) when ``owner_from_namespace``."""
        by_namespace = None
        if self.owner_from_namespace:
            by_namespace = {
                name: label_value(info.labels, self.owner_label)
                for name, info in (namespaces or {}).items()
            }
        return PerKey(list(self.facts.items()), dict(self.owners), by_namespace)


@dataclass(frozen=True)
class PerKey:
    facts: list[tuple[KeyRef, KeyFacts]]
    owners: dict[KeyRef, str]
    namespace_owners: dict[str, str] | None = None

    def __iter__(self) -> Iterator[KeySeries]:
        """One entry per key with an expiry or a scheduled rotation."""
        by_namespace = self.namespace_owners
        for ref, f in self.facts:
            if f.expires_at is not None or f.next_rotation is not None:
                owner = (
                    self.owners.get(ref, "")
                    if by_namespace is None
                    else by_namespace.get(ref[0], "")
                )
                yield KeySeries(*ref, owner, f.expiry, f.expires_at, f.next_rotation)
