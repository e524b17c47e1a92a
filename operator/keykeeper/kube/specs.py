"""Each ApiKey's spec, parsed once per (uid, generation): the watch event and the
reconcile that follows it share one parse.

Bounded (a parsed spec is ~3 KB, and 100,000 of them would be a third of a GiB): a key
beyond the bound is parsed again when it is reconciled. An invalid spec is cached as
its ``SpecError``, so a hostile spec costs one parse per generation, not one per event.
"""

from __future__ import annotations

from collections import OrderedDict

from keykeeper.api.models import ApiKeySpec, parse_apikey_spec
from keykeeper.errors import SpecError
from keykeeper.types import Body, KeyRef

SPEC_CACHE = 8192  # parsed specs kept


class SpecCache:
    def __init__(self) -> None:
        self._specs: OrderedDict[KeyRef, tuple[str, int, ApiKeySpec | SpecError]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._specs)

    def __contains__(self, ref: object) -> bool:
        return ref in self._specs

    def refs(self) -> set[KeyRef]:
        return set(self._specs)

    def parsed(self, ref: KeyRef, body: Body, *, keep: bool = True) -> ApiKeySpec | SpecError:
        meta = body.get("metadata", {})
        uid, generation = str(meta.get("uid", "")), int(meta.get("generation") or 0)
        cached = self._specs.get(ref)
        if cached is not None:
            self._specs.move_to_end(ref)
        if cached is not None and cached[:2] == (uid, generation) and generation:
            return cached[2]
        try:
            parsed: ApiKeySpec | SpecError = parse_apikey_spec(body.get("spec"))
        except SpecError as exc:
            parsed = exc
        if not keep:  # a key no policy admits: parsed for its reconcile, kept by nobody
            self._specs.pop(ref, None)
            return parsed
        self._specs[ref] = (uid, generation, parsed)
        self._specs.move_to_end(ref)
        while len(self._specs) > SPEC_CACHE:
            self._specs.popitem(last=False)
        return parsed

    def drop(self, ref: KeyRef) -> None:
        self._specs.pop(ref, None)
