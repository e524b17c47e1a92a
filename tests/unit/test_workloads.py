"""The opted-in workload index (K19): what it keeps of a workload, what a restart reads
from it, and that a restart lists only while the index is not in step."""

from __future__ import annotations

import asyncio
from typing import Any

from keykeeper.audit.events import EventSink
from keykeeper.controllers.apikey.restarts import Restarter
from keykeeper.controllers.apikey.stamps import stamp_for
from keykeeper.kube.paths import workloads_path
from keykeeper.kube.workloads import (
    KINDS,
    OPT_IN,
    RESTARTED_FOR,
    WINDOW,
    WorkloadIndex,
    compact,
)
from tests.unit.fakekube import FakeKube

SOURCE = ("home", "k")


def deployment(name: str, names: str, stamped: str | None = None) -> dict[str, Any]:
    annotations = {RESTARTED_FOR: stamped} if stamped else {}
    return {
        "metadata": {
            "name": name,
            "namespace": "apps",
            "uid": f"uid-{name}",
            "labels": {OPT_IN: "true"},
            "annotations": {OPT_IN: names, "big": "x" * 10_000},
            "managedFields": [{"manager": "kubectl"}] * 50,
        },
        "spec": {
            "replicas": 3,
            "template": {"metadata": {"annotations": annotations}, "spec": {"containers": []}},
        },
    }


def test_the_index_keeps_only_what_a_restart_decides_on() -> None:
    full = deployment("web", "home/k:a-key", stamped="a-key=2")
    kept = compact(full)
    assert len(str(kept)) < 400, kept
    for rotated in ({"a-key": 2}, {"a-key": 3}, {"b-key": 3}):
        assert stamp_for(kept, rotated, SOURCE) == stamp_for(full, rotated, SOURCE)
    assert kept["metadata"]["uid"] == "uid-web"


def test_put_drop_and_a_relist() -> None:
    index = WorkloadIndex()
    index.put("deployments", deployment("web", "home/k:a-key"))
    index.put("deployments", deployment("api", "home/k:b-key"))
    assert {w["metadata"]["name"] for w in index.workloads("apps", "deployments")} == {"web", "api"}
    index._apply("deployments", "DELETED", deployment("web", ""))  # opted out, or deleted
    assert [w["metadata"]["name"] for w in index.workloads("apps", "deployments")] == ["api"]
    index._replace("deployments", [])
    assert index.workloads("apps", "deployments") == []
    assert index.workloads("apps", "statefulsets") == []


def test_a_restart_reads_the_index_when_in_step_and_lists_when_not() -> None:
    kube = FakeKube()
    kube.put(workloads_path("apps", "deployments", "web"), deployment("web", "home/k:a-key"))
    index = WorkloadIndex()
    restarter = Restarter(kube, EventSink(kube, "test"), index)
    listed = asyncio.run(restarter.opted_in("apps", "deployments"))
    assert [w["metadata"]["name"] for w in listed] == ["web"], "not in step: listed"
    assert kube.requests, "not in step: a LIST"
    index._synced.update(KINDS)
    index.put("deployments", deployment("web", "home/k:a-key"))
    kube.requests.clear()
    found = asyncio.run(restarter.opted_in("apps", "deployments"))
    assert [w["metadata"]["name"] for w in found] == ["web"]
    assert kube.requests == [], "in step: no request"


def test_a_workload_deleted_before_its_restart_is_skipped_without_an_error() -> None:
    from keykeeper.controllers.apikey.run import Run

    kube = FakeKube()  # the index still has it; the API no longer does
    index = WorkloadIndex()
    index._synced.update(KINDS)
    web = deployment("web", "home/k:k")
    web["metadata"]["annotations"][WINDOW] = "0"  # at once
    index.put("deployments", web)
    restarter = Restarter(kube, EventSink(kube, "test"), index)
    run = Run(SOURCE, {"metadata": {"uid": "u", "name": "k", "namespace": "home"}})
    asyncio.run(restarter.restart(run, [("apps", "k", 2)]))
    assert restarter.results == {"gone": 1}
    assert run.journal.told == [], "nothing to tell: nothing was restarted, nothing failed"
    assert not [b for p, b in kube.objects.items() if "/events/" in p]


def test_a_kind_not_served_counts_as_listed_and_empty() -> None:
    """Argo Rollouts enabled where its CRD is not installed: the index is in step (no
    restart waits on a LIST of a kind that does not exist) and looks again later."""
    from keykeeper.errors import NotFound
    from keykeeper.kube.workloads import ROLLOUTS

    async def scenario() -> None:
        kube = FakeKube()
        kube.fail = lambda method, path: NotFound(path)
        index = WorkloadIndex(ROLLOUTS)
        task = asyncio.create_task(index.run(kube))
        await asyncio.sleep(0.05)
        assert index.synced and index.workloads("apps", "rollouts") == []
        task.cancel()

    asyncio.run(scenario())
