"""Who may read ``/metrics`` (``KEYKEEPER_METRICS_AUTH=kubernetes``; K19).

As kube-rbac-proxy and controller-runtime's secure metrics do: the scraper's bearer
token is authenticated by a TokenReview and authorized by a SubjectAccessReview
(``get`` on the non-resource URL ``/metrics``), both asked of the apiserver, so who may
scrape is plain RBAC (the chart's ClusterRole ``keykeeper-metrics-reader``). Answers
are kept per token digest for ``TTL`` seconds (a refusal for ``REFUSED_TTL``), at most
``MAX_KEPT`` of them, and at most ``REVIEWS_PER_SECOND`` new reviews are asked for: a
flood of made-up tokens costs the apiserver little and is answered 429. ``/healthz``
and ``/readyz`` stay open (kubelet probes carry no token). No token is ever logged.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from enum import IntEnum

from keykeeper.errors import KeykeeperError
from keykeeper.kube.client import Kube

log = logging.getLogger("keykeeper.metricsauth")

TTL, REFUSED_TTL = 60.0, 10.0
MAX_KEPT = 1024
REVIEWS_PER_SECOND = 10
TOKEN_REVIEWS = "/apis/authentication.k8s.io/v1/tokenreviews"  # noqa: S105 - a path
ACCESS_REVIEWS = "/apis/authorization.k8s.io/v1/subjectaccessreviews"


class Verdict(IntEnum):
    """The HTTP status a scrape gets."""

    ALLOWED = 200
    UNAUTHENTICATED = 401
    FORBIDDEN = 403
    TOO_MANY = 429
    UNAVAILABLE = 503


class Reviewer:
    def __init__(self, kube: Kube, clock: Callable[[], float] = time.monotonic) -> None:
        self._kube, self._clock = kube, clock
        self._kept: OrderedDict[str, tuple[float, Verdict]] = OrderedDict()
        self._window, self._asked = 0.0, 0

    async def check(self, authorization: str) -> Verdict:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return Verdict.UNAUTHENTICATED
        digest = hashlib.sha256(token.strip().encode()).hexdigest()
        now = self._clock()
        kept = self._kept.get(digest)
        if kept is not None and kept[0] > now:
            return kept[1]
        if not self._may_ask(now):
            return Verdict.TOO_MANY
        try:
            verdict = await self._review(token.strip())
        except KeykeeperError as exc:  # the apiserver is away: not allowed, not kept
            log.warning("reviewing a metrics scraper's token: %s", exc)
            return Verdict.UNAVAILABLE
        self._keep(digest, now + (TTL if verdict is Verdict.ALLOWED else REFUSED_TTL), verdict)
        return verdict

    def _may_ask(self, now: float) -> bool:
        if now - self._window >= 1.0:
            self._window, self._asked = now, 0
        self._asked += 1
        return self._asked <= REVIEWS_PER_SECOND

    def _keep(self, digest: str, until: float, verdict: Verdict) -> None:
        self._kept[digest] = (until, verdict)
        self._kept.move_to_end(digest)
        while len(self._kept) > MAX_KEPT:
            self._kept.popitem(last=False)

    async def _review(self, token: str) -> Verdict:
        review = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": {"token": token},
        }
        found = (await self._kube.call("POST", TOKEN_REVIEWS, review)).get("status") or {}
        if not found.get("authenticated"):
            return Verdict.UNAUTHENTICATED
        user = found.get("user") or {}
        access = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {
                "user": user.get("username", ""),
                "uid": user.get("uid", ""),
                "groups": user.get("groups") or [],
                "extra": user.get("extra") or {},
                "nonResourceAttributes": {"path": "/metrics", "verb": "get"},
            },
        }
        answer = (await self._kube.call("POST", ACCESS_REVIEWS, access)).get("status") or {}
        return Verdict.ALLOWED if answer.get("allowed") else Verdict.FORBIDDEN
