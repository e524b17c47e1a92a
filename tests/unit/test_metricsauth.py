"""The metrics reviewer at the ``Kube.call`` seam: answers kept per token, a flood of
made-up tokens capped, an unreachable apiserver refused, no token ever logged."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from keykeeper.errors import ApiUnavailable
from keykeeper.runtime import metricsauth
from keykeeper.runtime.metricsauth import Reviewer, Verdict


class Reviews:
    """An apiserver that knows one token, whose user may get /metrics."""

    def __init__(self) -> None:
        self.asked: list[str] = []
        self.away = False

    async def call(self, method: str, path: str, body: Any = None, **_: Any) -> dict[str, Any]:
        self.asked.append(path.rsplit("/", 1)[-1])
        if self.away:
            raise ApiUnavailable(f"{method} {path}: no connection")
        if path.endswith("tokenreviews"):
            known = body["spec"]["token"] == "good-token"
            return {"status": {"authenticated": known, "user": {"username": "prometheus"}}}
        return {"status": {"allowed": body["spec"]["user"] == "prometheus"}}


def check(reviewer: Reviewer, header: str) -> Verdict:
    return asyncio.run(reviewer.check(header))


def test_answers_are_kept_and_floods_capped(caplog: pytest.LogCaptureFixture) -> None:
    api, now = Reviews(), [100.0]
    reviewer = Reviewer(api, clock=lambda: now[0])  # type: ignore[arg-type]
    assert check(reviewer, "Bearer good-token") is Verdict.ALLOWED
    assert api.asked == ["tokenreviews", "subjectaccessreviews"]
    assert check(reviewer, "Bearer good-token") is Verdict.ALLOWED
    assert len(api.asked) == 2, "a kept answer asks nothing"
    assert check(reviewer, "Basic dXNlcjpwYXNz") is Verdict.UNAUTHENTICATED
    verdicts = [check(reviewer, f"Bearer made-up-{n}") for n in range(30)]
    assert verdicts.count(Verdict.UNAUTHENTICATED) == metricsauth.REVIEWS_PER_SECOND - 1
    assert verdicts[-1] is Verdict.TOO_MANY
    now[0] += metricsauth.TTL + 1  # the kept answer is old: asked again
    api.away = True
    with caplog.at_level(logging.DEBUG):
        assert check(reviewer, "Bearer good-token") is Verdict.UNAVAILABLE
    assert "good-token" not in caplog.text
    api.away = False
    assert check(reviewer, "Bearer good-token") is Verdict.ALLOWED
