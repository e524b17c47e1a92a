"""Workloads that opt in are rolled out once per rotation, not once per target; those
that did not are never touched, and the admission policy lets the operator change
nothing of a workload but its restart stamp."""

from __future__ import annotations

import json
import time
import urllib.request
from datetime import UTC, datetime
from typing import Any

import pytest
from devtools.controlplane import ControlPlane
from devtools.kk import Cluster, apikey, keypolicy, unique
from devtools.operator import Operator, wait_for

from tests.integration.conftest import Leaks

pytestmark = pytest.mark.cluster

OPT_IN = "keykeeper.dev/restart-on-rotation"
STAMP = "keykeeper.dev/restarted-for"
WINDOW = "keykeeper.dev/restart-window"


def deployment(
    name: str, names_secrets: str, opted_in: bool, window: str | None = None
) -> dict[str, Any]:
    labels = {"app": name, **({OPT_IN: "true"} if opted_in else {})}
    annotations = {OPT_IN: names_secrets, **({WINDOW: window} if window is not None else {})}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels, "annotations": annotations},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "registry.example/app:1"}]},
            },
        },
    }


def get(plane: ControlPlane, ns: str, name: str) -> dict[str, Any]:
    return dict(json.loads(plane.kubectl("-n", ns, "get", "deployment", name, "-o", "json")))


def stamp(plane: ControlPlane, ns: str, name: str) -> str | None:
    template = get(plane, ns, name)["spec"]["template"]["metadata"]
    return (template.get("annotations") or {}).get(STAMP)


def rotate(kk: Cluster, ns: str, name: str) -> None:
    at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    kk.patch_key(ns, name, {"metadata": {"annotations": {"keykeeper.dev/rotate-requested-at": at}}})


def test_an_opted_in_deployment_restarts_once_per_rotation(
    control_plane: ControlPlane, operator: Operator, kk: Cluster, leaks: Leaks
) -> None:
    home, apps = kk.namespace("home"), kk.namespace("apps")
    policy = unique("restarts")
    kk.create(keypolicy(policy, targets={"names": [apps]}, rotation={"gracePeriod": "1h"}))
    targets = [
        {"namespace": apps, "secretName": "a-key"},
        {"namespace": apps, "secretName": "b-key"},
    ]
    kk.create(apikey(home, "k", policy, projections=targets))
    leaks.add(wait_for(lambda: kk.value(apps, "a-key"), what="projected"))
    names = f"{home}/k:a-key, {home}/k:b-key"
    web = deployment("web", names, True, window="0")  # each rotation rolls at once
    for body in (web, deployment("other", f"{home}/k:a-key", False)):
        control_plane.kubectl("-n", apps, "apply", "-f", "-", input=json.dumps(body))
    before = get(control_plane, apps, "web")["metadata"]["generation"]

    for version in (2, 3):
        rotate(kk, home, "k")
        wait_for(lambda v=version: stamp(control_plane, apps, "web") == f"a-key={v},b-key={v}",
                 what=f"web restarted for version {version}")  # fmt: skip
        leaks.add(kk.value(apps, "a-key"))  # type: ignore[arg-type]
    told = kk.wait_for_events(home, "k", "RolloutRestarted")
    assert not any("web" in e.message for e in told), "the ApiKey's Events count, not name"
    on_web = kk.wait_for_events(apps, "web", "RolloutRestarted")
    assert any(f"ApiKey {home}/k rotated" in e.message for e in on_web)
    after = get(control_plane, apps, "web")["metadata"]["generation"]
    assert after - before == 2, "one rollout per rotation, though two targets rotated"
    assert stamp(control_plane, apps, "other") is None, "a workload that did not opt in"
    restarts = [r for r in operator.audit_records() if r["action"] == "RolloutRestarted"]
    assert len([r for r in restarts if apps in r["detail"]]) == 2
    with urllib.request.urlopen(operator.metrics, timeout=5) as answer:
        counted = [ln for ln in answer.read().decode().splitlines()
                   if ln.startswith('keykeeper_restarts_total{result="restarted"}')]  # fmt: skip
    assert counted and float(counted[0].split()[-1]) >= 2, counted


def test_the_operator_may_change_nothing_else_of_a_workload(
    control_plane: ControlPlane, operator: Operator, kk: Cluster
) -> None:
    apps = kk.namespace("apps")
    for body in (deployment("web", "a-key", True), deployment("other", "a-key", False)):
        control_plane.kubectl("-n", apps, "apply", "-f", "-", input=json.dumps(body))
    as_operator = operator.identity
    stamp_patch = json.dumps(
        {"spec": {"template": {"metadata": {"annotations": {STAMP: "a-key=9"}}}}}
    )
    image_patch = json.dumps(
        {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "evil/app:6"}]}}}}
    )
    allowed = control_plane.kubectl(
        "-n", apps, "patch", "deployment", "web", "-p", stamp_patch, identity=as_operator
    )
    assert "patched" in allowed
    for name, patch in (("web", image_patch), ("other", stamp_patch)):
        refused = control_plane.kubectl(
            "-n", apps, "patch", "deployment", name, "-p", patch, identity=as_operator, check=False
        )
        assert "keykeeper-workload-restarts" in refused and "denied" in refused.lower()
    assert get(control_plane, apps, "web")["spec"]["template"]["spec"]["containers"][0][
        "image"
    ] == ("registry.example/app:1")


def workload(kind: str, name: str) -> dict[str, Any]:
    """An opted-in workload of ``kind`` (Deployment, StatefulSet or DaemonSet)."""
    body = deployment(name, f"home/k:{name}", True)
    body["kind"] = kind
    if kind == "DaemonSet":
        body["spec"].pop("replicas")
    if kind == "StatefulSet":
        body["spec"]["serviceName"] = name
    return body


# K10: every field of a workload that changes how (or whether) it rolls out, who owns it
# and what keeps it, patched with the operator's identity: each is refused
MUTATIONS = {
    "Deployment": [
        {"spec": {"paused": True}},
        {"spec": {"strategy": {"type": "Recreate", "rollingUpdate": None}}},
        {"spec": {"minReadySeconds": 30}},
        {"spec": {"progressDeadlineSeconds": 60}},
        {"spec": {"revisionHistoryLimit": 0}},
    ],
    "StatefulSet": [
        {"spec": {"updateStrategy": {"type": "OnDelete", "rollingUpdate": None}}},
        {"spec": {"minReadySeconds": 30}},
        {"spec": {"persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Delete"}}},
        {"spec": {"revisionHistoryLimit": 0}},
    ],
    "DaemonSet": [
        {"spec": {"updateStrategy": {"type": "OnDelete", "rollingUpdate": None}}},
        {"spec": {"minReadySeconds": 30}},
        {"spec": {"revisionHistoryLimit": 0}},
    ],
}
EVERY_KIND = [
    {"metadata": {"finalizers": ["example.com/hold"]}},
    {
        "metadata": {
            "ownerReferences": [
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "name": "gc-bait",
                    "uid": "00000000-0000-0000-0000-000000000001",
                }
            ]
        }
    },
]


@pytest.mark.parametrize("kind", sorted(MUTATIONS))
def test_the_operator_may_not_change_how_a_workload_rolls_out(
    control_plane: ControlPlane, operator: Operator, kk: Cluster, kind: str
) -> None:
    apps = kk.namespace("apps")
    control_plane.kubectl("-n", apps, "apply", "-f", "-", input=json.dumps(workload(kind, "web")))
    resource = kind.lower()
    stamp_patch = {"spec": {"template": {"metadata": {"annotations": {STAMP: "web=9"}}}}}
    allowed = control_plane.kubectl(
        "-n", apps, "patch", resource, "web", "--type", "merge", "--dry-run=server",
        "-p", json.dumps(stamp_patch), identity=operator.identity,
    )  # fmt: skip
    assert "patched" in allowed, "the restart stamp itself still goes through"
    for patch in [*MUTATIONS[kind], *EVERY_KIND]:
        refused = control_plane.kubectl(
            "-n", apps, "patch", resource, "web", "--type", "merge", "--dry-run=server",
            "-p", json.dumps(patch), identity=operator.identity, check=False,
        )  # fmt: skip
        assert "keykeeper-workload-restarts" in refused and "denied" in refused.lower(), (
            f"{kind} {patch}: {refused}"
        )


def test_an_operator_restart_rolls_out_nothing(
    control_plane: ControlPlane, operator: Operator, kk: Cluster, leaks: Leaks
) -> None:
    """#26: a workload restarts only when a value it mounts changed; an operator that
    restarts (and re-reads every key, re-checks every projected Secret) never rolls one.
    50 opted-in Deployments, each restarted once by a rotation (after the default 30 s
    restart window), then the operator stopped and started: not one more rollout."""
    home, apps = kk.namespace("home"), kk.namespace("apps")
    policy = unique("storm")
    kk.create(keypolicy(policy, targets={"names": [apps]}, rotation={"gracePeriod": "1h"}))
    kk.create(apikey(home, "k", policy, projections=[{"namespace": apps, "secretName": "s"}]))
    leaks.add(wait_for(lambda: kk.value(apps, "s"), what="projected"))
    names = [f"web-{n:02d}" for n in range(50)]
    manifests = [deployment(name, f"{home}/k:s", True) for name in names]
    control_plane.kubectl(
        "-n", apps, "apply", "-f", "-", input=json.dumps({"kind": "List", "apiVersion": "v1", "items": manifests})
    )  # fmt: skip
    rotate(kk, home, "k")

    def generations() -> dict[str, int]:
        listed = json.loads(control_plane.kubectl("-n", apps, "get", "deployments", "-o", "json"))
        return {d["metadata"]["name"]: d["metadata"]["generation"] for d in listed["items"]}

    wait_for(lambda: all(stamp(control_plane, apps, n) == "s=2" for n in names[-3:]),
             timeout=90, what="restarted for version 2")  # fmt: skip
    leaks.add(kk.value(apps, "s"))  # type: ignore[arg-type]
    time.sleep(1.0)
    before = generations()
    assert len(before) == 50 and all(g == 2 for g in before.values()), before
    operator.stop()
    operator.start()
    wait_for(lambda: urllib.request.urlopen(operator.liveness.replace("/healthz", "/readyz"),
             timeout=2).status == 200, timeout=90, what="ready")  # fmt: skip
    time.sleep(5.0)  # the start-up sweep reconciles the key and sees every Secret again
    assert generations() == before, "a restart of the operator rolled workloads out"


def test_keys_rotated_within_a_restart_window_are_one_rollout(
    control_plane: ControlPlane, operator: Operator, kk: Cluster, leaks: Leaks
) -> None:
    """#26 (sapcc PR #8835): a username and a password, two ApiKeys, rotated seconds
    apart, roll a workload that mounts both out once, with both new versions."""
    home, apps = kk.namespace("home"), kk.namespace("apps")
    policy = unique("window")
    kk.create(keypolicy(policy, targets={"names": [apps]}, rotation={"gracePeriod": "1h"}))
    for name in ("user", "pass"):
        kk.create(apikey(home, name, policy, projections=[{"namespace": apps, "secretName": name}]))
        leaks.add(wait_for(lambda n=name: kk.value(apps, n), what=f"{name} projected"))  # type: ignore[misc]
    names = f"{home}/user:user, {home}/pass:pass"
    body = deployment("db-client", names, True, window="8s")
    control_plane.kubectl("-n", apps, "apply", "-f", "-", input=json.dumps(body))
    before = get(control_plane, apps, "db-client")["metadata"]["generation"]
    rotate(kk, home, "user")
    time.sleep(3.0)  # the password follows a few seconds later, inside the window
    rotate(kk, home, "pass")
    wait_for(lambda: stamp(control_plane, apps, "db-client") == "pass=2,user=2", timeout=30,
             what="one rollout with both new versions")  # fmt: skip
    time.sleep(2.0)
    after = get(control_plane, apps, "db-client")["metadata"]["generation"]
    assert after - before == 1, "two rotations inside the window: one rollout"
    on_workload = kk.wait_for_events(apps, "db-client", "RolloutRestarted")
    assert any(f"ApiKey {home}/pass, {home}/user rotated" in e.message for e in on_workload)
    for name in ("user", "pass"):
        leaks.add(kk.value(apps, name))  # type: ignore[arg-type]


def rollout(name: str, names_secrets: str, opted_in: bool) -> dict[str, Any]:
    """An Argo Rollout (its real CRD is installed; no Argo controller runs)."""
    body = deployment(name, names_secrets, opted_in, window="0")
    body["apiVersion"], body["kind"] = "argoproj.io/v1alpha1", "Rollout"
    body["spec"]["strategy"] = {"canary": {"steps": [{"setWeight": 20}, {"pause": {}}]}}
    return body


def get_rollout(plane: ControlPlane, ns: str, name: str) -> dict[str, Any]:
    return dict(
        json.loads(plane.kubectl("-n", ns, "get", "rollout.argoproj.io", name, "-o", "json"))
    )


def test_an_opted_in_argo_rollout_restarts_by_restart_at(
    control_plane: ControlPlane, operator: Operator, kk: Cluster, leaks: Leaks
) -> None:
    """#26: a Rollout is restarted as `kubectl argo rollouts restart` does (spec.restartAt),
    its stamp on itself: its template, and so its canary, is not touched."""
    home, apps = kk.namespace("home"), kk.namespace("apps")
    policy = unique("argo")
    kk.create(keypolicy(policy, targets={"names": [apps]}, rotation={"gracePeriod": "1h"}))
    kk.create(apikey(home, "k", policy, projections=[{"namespace": apps, "secretName": "s"}]))
    leaks.add(wait_for(lambda: kk.value(apps, "s"), what="projected"))
    for body in (rollout("canary", f"{home}/k:s", True), rollout("other", f"{home}/k:s", False)):
        control_plane.kubectl("-n", apps, "apply", "-f", "-", input=json.dumps(body))
    template = get_rollout(control_plane, apps, "canary")["spec"]["template"]
    rotate(kk, home, "k")

    def stamped() -> bool:
        annotations = get_rollout(control_plane, apps, "canary")["metadata"].get("annotations")
        return (annotations or {}).get(STAMP) == "s=2"

    wait_for(stamped, timeout=30, what="the Rollout restarted for version 2")
    leaks.add(kk.value(apps, "s"))  # type: ignore[arg-type]
    after = get_rollout(control_plane, apps, "canary")
    restart_at = datetime.fromisoformat(after["spec"]["restartAt"].replace("Z", "+00:00"))
    assert abs((datetime.now(UTC) - restart_at).total_seconds()) < 60
    assert after["spec"]["template"] == template, "no new revision through the canary"
    other = get_rollout(control_plane, apps, "other")
    assert "restartAt" not in other["spec"], "a Rollout that did not opt in"
    on_it = kk.wait_for_events(apps, "canary", "RolloutRestarted")
    assert any(f"ApiKey {home}/k rotated s=2" in e.message for e in on_it)


ROLLOUT_MUTATIONS = [
    {"spec": {"paused": True}},
    {"spec": {"strategy": {"canary": {"steps": []}}}},
    {"spec": {"replicas": 5}},
    {"spec": {"template": {"metadata": {"annotations": {STAMP: "s=9"}}}}},
    {"metadata": {"labels": {"extra": "x"}}},
    {"metadata": {"annotations": {"other": "x"}}},
    {"metadata": {"finalizers": ["example.com/hold"]}},
]


def test_the_operator_may_change_only_a_rollouts_restart_at_and_stamp(
    control_plane: ControlPlane, operator: Operator, kk: Cluster
) -> None:
    apps = kk.namespace("apps")
    for body in (rollout("web", "home/k:s", True), rollout("other", "home/k:s", False)):
        control_plane.kubectl("-n", apps, "apply", "-f", "-", input=json.dumps(body))
    restart = {
        "metadata": {"annotations": {STAMP: "s=9"}},
        "spec": {"restartAt": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")},
    }

    def patch(name: str, body: dict[str, Any]) -> str:
        return control_plane.kubectl(
            "-n", apps, "patch", "rollout.argoproj.io", name, "--type", "merge",
            "--dry-run=server", "-p", json.dumps(body), identity=operator.identity, check=False,
        )  # fmt: skip

    assert "patched" in patch("web", restart), "the restart itself goes through"
    refused = patch("other", restart)
    assert "keykeeper-rollout-restarts" in refused and "denied" in refused.lower(), refused
    for mutation in ROLLOUT_MUTATIONS:
        refused = patch("web", mutation)
        assert "keykeeper-rollout-restarts" in refused and "denied" in refused.lower(), (
            f"{mutation}: {refused}"
        )
