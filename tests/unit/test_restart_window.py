"""Restart windows (#26): rotations owed to one workload within its window are one
rollout; a window of 0 rolls at once; a shutdown rolls every open window; a workload
that stopped opting in, or was deleted, before its window closed is left alone."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from keykeeper.audit.events import EventSink
from keykeeper.controllers.apikey.restarts import Restarter
from keykeeper.controllers.apikey.run import Run
from keykeeper.controllers.apikey.stamps import DEFAULT_WINDOW, MAX_WINDOW, window_of
from keykeeper.kube.paths import workloads_path
from keykeeper.kube.workloads import OPT_IN, RESTARTED_FOR, WINDOW
from tests.unit.fakekube import FakeKube

WEB = workloads_path("apps", "deployments", "web")
PLACE = ("apps", "deployments", "web")


def deployment(names: str, window: str | None = None) -> dict[str, Any]:
    annotations = {OPT_IN: names, **({WINDOW: window} if window is not None else {})}
    return {
        "metadata": {"name": "web", "namespace": "apps", "labels": {OPT_IN: "true"},
                     "annotations": annotations},
        "spec": {"template": {"metadata": {}, "spec": {"containers": []}}},
    }  # fmt: skip


def run_of(name: str) -> Run:
    return Run(
        ("home", name), {"metadata": {"uid": f"u-{name}", "name": name, "namespace": "home"}}
    )


def patches(kube: FakeKube) -> int:
    return sum(1 for method, path in kube.requests if method == "PATCH" and path == WEB)


def stamp_of(kube: FakeKube) -> str:
    return str(kube.objects[WEB]["spec"]["template"]["metadata"]["annotations"][RESTARTED_FOR])


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        (None, DEFAULT_WINDOW),
        ("", DEFAULT_WINDOW),
        ("0", 0.0),
        ("0s", 0.0),
        ("10s", 10.0),
        ("2m", 120.0),
        ("1h", MAX_WINDOW),  # bounded: a restart is never put off for long
        ("soon", DEFAULT_WINDOW),  # not a duration
        ("-5s", DEFAULT_WINDOW),
    ],
)
def test_the_window_a_workload_asks_for(text: str | None, seconds: float) -> None:
    assert window_of(deployment("home/a:user", text)) == seconds


def test_a_username_and_a_password_rotated_apart_are_one_rollout_with_both() -> None:
    async def scenario() -> None:
        kube = FakeKube()
        kube.put(WEB, deployment("home/a:user, home/b:pass", "30s"))
        restarter = Restarter(kube, EventSink(kube, "test"))
        first, second = run_of("a"), run_of("b")
        await restarter.restart(first, [("apps", "user", 2)])
        await restarter.restart(second, [("apps", "pass", 5)])
        assert patches(kube) == 0, "the window is open: nothing rolled yet"
        assert [t.message for t in first.journal.told] == [
            "1 opted-in workload(s) restart when their window closes"
        ]
        assert await restarter.roll(PLACE) == "restarted"  # the window closes
        assert patches(kube) == 1 and stamp_of(kube) == "pass=5,user=2"
        assert restarter.results == {"restarted": 1}
        await restarter.restart(first, [("apps", "user", 2)])  # the same version again
        assert not restarter.gathered, "rolled for it already: nothing owed"

    asyncio.run(scenario())


def test_a_window_of_zero_rolls_at_once_and_a_closing_timer_rolls_the_rest() -> None:
    async def scenario() -> None:
        kube = FakeKube()
        kube.put(WEB, deployment("home/a:user", "0"))
        restarter = Restarter(kube, EventSink(kube, "test"))
        await restarter.restart(run_of("a"), [("apps", "user", 2)])
        assert patches(kube) == 1 and stamp_of(kube) == "user=2"
        kube.objects[WEB]["metadata"]["annotations"][WINDOW] = "1s"
        await restarter.restart(run_of("a"), [("apps", "user", 3)])
        assert patches(kube) == 1
        await asyncio.sleep(1.3)  # the loop's timer closes the window
        assert patches(kube) == 2 and stamp_of(kube) == "user=3"

    asyncio.run(scenario())


def test_a_shutdown_rolls_every_open_window() -> None:
    async def scenario() -> None:
        kube = FakeKube()
        kube.put(WEB, deployment("home/a:user"))  # the default window
        restarter = Restarter(kube, EventSink(kube, "test"))
        await restarter.restart(run_of("a"), [("apps", "user", 2)])
        await restarter.flush()
        assert patches(kube) == 1 and not restarter.gathered

    asyncio.run(scenario())


def test_a_workload_that_left_or_stopped_asking_before_its_window_closed() -> None:
    async def scenario() -> None:
        kube = FakeKube()
        kube.put(WEB, deployment("home/a:user"))
        restarter = Restarter(kube, EventSink(kube, "test"))
        await restarter.restart(run_of("a"), [("apps", "user", 2)])
        kube.objects[WEB]["metadata"]["annotations"][OPT_IN] = "home/other:user"
        assert await restarter.roll(PLACE) is None and patches(kube) == 0
        await restarter.restart(run_of("other"), [("apps", "user", 2)])
        del kube.objects[WEB]
        assert await restarter.roll(PLACE) == "gone"
        assert restarter.results == {"gone": 1}

    asyncio.run(scenario())


def test_an_argo_rollout_is_restarted_by_restart_at_with_its_stamp_on_itself() -> None:
    from datetime import UTC, datetime

    from keykeeper.controllers.apikey.restarts import restart_patch
    from keykeeper.controllers.apikey.stamps import stamped

    now = datetime(2026, 12, 4, 22, 0, tzinfo=UTC)
    assert restart_patch("rollouts", "s=2", now) == {
        "metadata": {"annotations": {RESTARTED_FOR: "s=2"}},
        "spec": {"restartAt": "2026-12-04T22:00:00Z"},
    }
    assert restart_patch("deployments", "s=2", now) == {
        "spec": {"template": {"metadata": {"annotations": {RESTARTED_FOR: "s=2"}}}}
    }
    body = deployment("home/a:s")
    body["metadata"]["annotations"][RESTARTED_FOR] = "s=2"  # where a Rollout keeps it
    assert stamped(body, "rollouts") == {"s": 2}
    assert stamped(body, "deployments") == {}, "a Deployment's stamp is on its template"


def test_a_kind_the_cluster_does_not_serve_has_no_workloads() -> None:
    from keykeeper.errors import NotFound
    from keykeeper.kube.workloads import kinds_for

    async def scenario() -> None:
        kube = FakeKube()
        kube.fail = lambda method, path: NotFound(path) if "argoproj.io" in path else None
        restarter = Restarter(kube, EventSink(kube, "test"), kinds=kinds_for(True))
        assert await restarter.opted_in("apps", "rollouts") == []
        await restarter.restart(run_of("a"), [("apps", "user", 2)])  # no error, nothing to do

    asyncio.run(scenario())


def test_a_rollout_the_api_refuses_at_the_windows_close_is_tried_again() -> None:
    from keykeeper.errors import ApiUnavailable

    async def scenario() -> None:
        kube = FakeKube()
        kube.put(WEB, deployment("home/a:user"))
        restarter = Restarter(kube, EventSink(kube, "test"))
        await restarter.restart(run_of("a"), [("apps", "user", 2)])
        kube.fail = lambda method, path: ApiUnavailable("the apiserver is away")
        assert await restarter.roll(PLACE) == "failed"
        assert restarter.gathered[PLACE].versions == {"user": 2}, "still owed, not dropped"
        kube.fail = lambda method, path: None
        await restarter.flush()
        assert patches(kube) == 1 and stamp_of(kube) == "user=2"

    asyncio.run(scenario())
