"""The chart and the Dockerfile, checked without a cluster: helm lint, the values
schema, the CRDs and RBAC against their single sources, the restricted Pod Security
fields, the Dockerfile through the BuildKit parser, and the dashboard's metrics.
(The rendered manifests against the real apiserver: e2e/.)"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from devtools.image.dockerfile import context_files, stages

from keykeeper.api.models import SecretType
from keykeeper.api.templates import PROJECTABLE
from keykeeper.runtime import metrics
from tests.chart.conftest import CHART, REPO, Render, run_helm


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def deployment(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (found,) = by_kind(docs, "Deployment")
    return found


def test_helm_lint_is_clean(helm: Path) -> None:
    done = run_helm(helm, "lint", "--strict", str(CHART))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 chart(s) failed" in done.stdout


def test_the_chart_crds_are_the_repository_crds(render: Render) -> None:
    ours = sorted(p.name for p in (CHART / "files" / "crds").glob("*.yaml"))
    assert ours == sorted(p.name for p in (REPO / "crds").glob("*.yaml"))
    for name in ours:
        assert (CHART / "files" / "crds" / name).read_bytes() == (
            REPO / "crds" / name
        ).read_bytes(), (
            f"charts/keykeeper/files/crds/{name} differs from crds/{name}: copy crds/ over it"
        )
    rendered = {d["metadata"]["name"]: d for d in by_kind(render(), "CustomResourceDefinition")}
    for path in (REPO / "crds").glob("*.yaml"):
        source = yaml.safe_load(path.read_text())
        crd = rendered[source["metadata"]["name"]]
        assert crd["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
        assert crd["spec"] == source["spec"]


def test_crds_can_be_left_out_or_not_kept(render: Render) -> None:
    assert by_kind(render("crds.install=false"), "CustomResourceDefinition") == []
    for crd in by_kind(render("crds.keep=false"), "CustomResourceDefinition"):
        assert "helm.sh/resource-policy" not in (crd["metadata"].get("annotations") or {})


def _comparable(doc: dict[str, Any]) -> dict[str, Any]:
    meta = {k: v for k, v in doc["metadata"].items() if k != "labels"}
    return {**doc, "metadata": meta}


@pytest.mark.parametrize("source", ["rbac.yaml", "admission-policy.yaml"])
def test_rbac_and_admission_policies_are_deploys(render: Render, source: str) -> None:
    """deploy/ is what the integration tests run the operator under: the chart
    installs exactly that (for a release named keykeeper in keykeeper-system)."""
    rendered = {(d["kind"], d["metadata"]["name"]): d for d in render()}
    for doc in yaml.safe_load_all((REPO / "deploy" / source).read_text()):
        if not doc:
            continue
        key = (doc["kind"], doc["metadata"]["name"])
        assert key in rendered, f"{key} of deploy/{source} is not in the chart"
        assert _comparable(rendered[key]) == _comparable(doc), key


def test_the_server_side_leader_fence_is_deploys_and_opt_in(render: Render) -> None:
    """deploy/leader-fence.yaml, rendered only with leaderElection.serverFence (K12)."""
    kinds = {d["kind"] for d in render()}
    assert "ValidatingAdmissionPolicyBinding" in kinds
    assert not [d for d in render() if d["metadata"]["name"].endswith("leader-fence")]
    rendered = {
        (d["kind"], d["metadata"]["name"]): d for d in render("leaderElection.serverFence=true")
    }
    for doc in yaml.safe_load_all((REPO / "deploy" / "leader-fence.yaml").read_text()):
        key = (doc["kind"], doc["metadata"]["name"])
        assert _comparable(rendered[key]) == _comparable(doc), key
    off = render("leaderElection.serverFence=true", "leaderElection.enabled=false")
    assert not [d for d in off if d["metadata"]["name"].endswith("leader-fence")]


def test_authenticated_metrics_are_deploys_and_opt_in(render: Render) -> None:
    """deploy/metrics-auth.yaml, rendered only with http.metricsAuth=kubernetes (K19)."""
    assert not [d for d in render() if "metrics-" in d["metadata"]["name"]]
    docs = render("http.metricsAuth=kubernetes", "serviceMonitor.enabled=true")
    rendered = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    for doc in yaml.safe_load_all((REPO / "deploy" / "metrics-auth.yaml").read_text()):
        key = (doc["kind"], doc["metadata"]["name"])
        assert _comparable(rendered[key]) == _comparable(doc), key
    (container,) = deployment(docs)["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["KEYKEEPER_METRICS_AUTH"] == "kubernetes"
    (monitor,) = by_kind(docs, "ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["bearerTokenFile"].endswith("serviceaccount/token")


def test_the_admission_policies_name_the_releases_service_account(render: Render) -> None:
    docs = render("serviceAccount.name=kk", namespace="secrets")
    for policy in by_kind(docs, "ValidatingAdmissionPolicy"):
        (condition,) = policy["spec"]["matchConditions"]
        assert "'system:serviceaccount:secrets:kk'" in condition["expression"]
    (binding,) = by_kind(docs, "ClusterRoleBinding")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "kk", "namespace": "secrets"}]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("replicaCount=0", "/replicaCount': minimum: got 0, want 1"),
        ("operator.logFormat=xml", "value must be one of 'json', 'plain', 'full'"),
        ("image.digest=latest", "/image/digest"),
        ("audit.volume=hostPath", "/audit/volume"),
        ("http.metricsAuth=basic", "/http/metricsAuth"),
        ("audit.segmentBytes=1000", "/audit/segmentBytes': minimum: got 1,000, want 65,536"),
        ("http.port=80", "/http/port': minimum: got 80, want 1,024"),
        ("operator.sealingRenewal=monthly", "/operator/sealingRenewal"),
        ("serviceMonitor.interval=often", "/serviceMonitor/interval"),
        ("unknownKey=1", "additional properties 'unknownKey' not allowed"),
        ("operator.worker=4", "additional properties 'worker' not allowed"),
    ],
)
def test_the_schema_refuses_wrong_values_clearly(helm: Path, value: str, message: str) -> None:
    done = run_helm(helm, "template", "keykeeper", str(CHART), "--set", value)
    assert done.returncode != 0
    assert "values don't meet the specifications of the schema" in done.stderr
    assert message in done.stderr, done.stderr


def test_a_shared_audit_claim_must_be_read_write_many(helm: Path, render: Render) -> None:
    done = run_helm(
        helm,
        "template",
        "keykeeper",
        str(CHART),
        "--set",
        "audit.volume=persistentVolumeClaim",
        "--set",
        "audit.persistentVolumeClaim.accessModes={ReadWriteOnce}",
    )
    assert done.returncode != 0 and "must be ReadWriteMany" in done.stderr
    docs = render("audit.volume=persistentVolumeClaim")
    (claim,) = by_kind(docs, "PersistentVolumeClaim")
    assert claim["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    volumes = deployment(docs)["spec"]["template"]["spec"]["volumes"]
    audit = next(v for v in volumes if v["name"] == "audit")
    assert audit == {"name": "audit", "persistentVolumeClaim": {"claimName": "keykeeper-audit"}}


def test_the_pod_is_built_for_the_restricted_profile(render: Render) -> None:
    pod = deployment(render())["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"] == {"drop": ["ALL"]}
    token = next(v for v in pod["volumes"] if v["name"] == "api-token")
    sources = token["projected"]["sources"]
    assert sources[0]["serviceAccountToken"]["expirationSeconds"] <= 3607
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["api-token"]["readOnly"] is True
    assert {"hostPath", "hostNetwork", "hostPID"}.isdisjoint(json.dumps(pod)), (
        "nothing from the host"
    )


def test_two_replicas_a_budget_spread_probes_and_resources_by_default(render: Render) -> None:
    docs = render()
    spec = deployment(docs)["spec"]
    assert spec["replicas"] == 2
    assert spec["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    (budget,) = by_kind(docs, "PodDisruptionBudget")
    assert budget["spec"]["minAvailable"] == 1
    pod = spec["template"]["spec"]
    assert pod["topologySpreadConstraints"][0]["topologyKey"] == "kubernetes.io/hostname"
    (container,) = pod["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["resources"]["limits"]["memory"] == "1Gi"
    env = {e["name"]: e for e in container["env"]}
    assert env["KEYKEEPER_LEADER_ELECTION"]["value"] == "true"
    assert env["KEYKEEPER_AUDIT_SEGMENT_BYTES"]["value"] == "16777216"  # not 1.6777216e+07
    assert env["KEYKEEPER_AUDIT_SEGMENTS_KEPT"]["value"] == "8"
    assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert by_kind(render("replicaCount=1"), "PodDisruptionBudget") == []
    assert by_kind(docs, "ServiceMonitor") == []
    (monitor,) = by_kind(render("serviceMonitor.enabled=true"), "ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["port"] == "http"


def test_a_network_policy_lets_only_the_named_peers_reach_metrics(render: Render) -> None:
    """K19: /metrics is unauthenticated; the chart can put a NetworkPolicy in front."""
    assert by_kind(render(), "NetworkPolicy") == []
    (closed,) = by_kind(render("networkPolicy.enabled=true"), "NetworkPolicy")
    assert closed["spec"]["policyTypes"] == ["Ingress"] and closed["spec"]["ingress"] == []
    peer = "networkPolicy.metricsFrom[0].namespaceSelector.matchLabels.team=monitoring"
    (opened,) = by_kind(render("networkPolicy.enabled=true", peer), "NetworkPolicy")
    (rule,) = opened["spec"]["ingress"]
    assert rule["from"] == [{"namespaceSelector": {"matchLabels": {"team": "monitoring"}}}]
    assert rule["ports"] == [{"port": "http", "protocol": "TCP"}]
    (pod,) = [d for d in render() if d["kind"] == "Deployment"]
    labels = pod["spec"]["template"]["metadata"]["labels"]
    assert all(labels.get(k) == v for k, v in opened["spec"]["podSelector"]["matchLabels"].items())


def test_the_image_is_pinned_by_digest_when_asked(render: Render) -> None:
    digest = "sha256:" + "a" * 64
    (container,) = deployment(render(f"image.digest={digest}"))["spec"]["template"]["spec"][
        "containers"
    ]
    assert container["image"] == f"ghcr.io/keykeeper/keykeeper@{digest}"


def test_notes_tell_the_next_three_commands() -> None:
    """(helm renders NOTES.txt only on install: e2e reads the rendered one.)"""
    notes = (CHART / "templates" / "NOTES.txt").read_text()
    steps = [line.strip()[:2] for line in notes.splitlines() if re.match(r"^\d\. ", line)]
    assert steps == ["1.", "2.", "3."]
    assert notes.count("kubectl ") >= 3


# -- the Dockerfile ---------------------------------------------------------------------------


def test_the_dockerfile_is_multi_stage_pinned_and_non_root(render: Render) -> None:
    text = (REPO / "Dockerfile").read_text()
    base = re.search(r"^ARG BASE=(\S+)$", text, re.MULTILINE)
    assert base is not None
    made = (REPO / "devtools" / "image" / "base.sh").read_text()
    assert f"name={base.group(1)}" in made, "the default base is the one base.sh makes here"
    assert "--include=python3,python3-venv,ca-certificates" in made
    assert "bookworm-security" in made, "security updates are in the base"
    parsed = stages()
    assert len(parsed) >= 2
    build, final = parsed[0], parsed[-1]
    assert build.name == "build"
    assert build.env.get("PIP_NO_CACHE_DIR") == "1"
    assert final.runs == [], "the final stage runs nothing: no compilers, no package caches"
    assert final.copies == [], "the final stage takes only what the build stage made"
    assert final.from_stage == [("build", "/opt/keykeeper", "/opt/keykeeper")]
    uid, _, gid = final.user.partition(":")
    assert uid.isdigit() and int(uid) >= 1000 and gid.isdigit()
    labels = set(final.labels)
    assert {
        "org.opencontainers.image.title",
        "org.opencontainers.image.version",
        "org.opencontainers.image.source",
        "org.opencontainers.image.licenses",
    } <= labels
    (container,) = deployment(render())["spec"]["template"]["spec"]["containers"]
    assert final.entrypoint == container["command"], "the chart runs the image's ENTRYPOINT"
    pod_user = deployment(render())["spec"]["template"]["spec"]["securityContext"]["runAsUser"]
    assert int(uid) == pod_user


def test_the_build_context_holds_only_what_the_image_needs() -> None:
    files = context_files()
    assert "pyproject.toml" in files and "operator/keykeeper/__init__.py" in files
    assert not [
        f
        for f in files
        if f.split("/")[0]
        not in ("pyproject.toml", "README.md", "LICENSE", "image.requirements.txt", "operator")
    ]
    assert not [f for f in files if "__pycache__" in f or ".egg-info" in f]
    assert "image.requirements.txt" in files


# what the image must be able to import: every provider's SDK (the extras)
PROVIDER_SDKS = (
    "boto3",
    "azure-keyvault-keys",
    "azure-identity",
    "google-cloud-kms",
    "python-pkcs11",
)


def test_the_image_installs_every_provider_sdk_as_uv_lock_pins_it() -> None:
    """The image once shipped without its extras: `kms: {provider: aws}` failed with a
    missing-extra error in every cluster. Its dependencies are now uv.lock's export,
    hashes required, so the lock file is what the Dockerfile, make and CI all use."""
    uv = REPO / ".cache" / "tools" / "bin" / "uv"
    exported = subprocess.run(
        [
            str(uv),
            "export",
            "--frozen",
            "--no-emit-project",
            "--extra",
            "aws",
            "--extra",
            "azure",
            "--extra",
            "gcp",
            "--extra",
            "pkcs11",
            "--no-header",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    committed = (REPO / "image.requirements.txt").read_text()
    assert committed.split("\n", 2)[2] == exported, (
        "run `make lock`: image.requirements.txt is stale"
    )
    pinned = {line.split("==")[0] for line in committed.splitlines() if "==" in line}
    assert set(PROVIDER_SDKS) <= pinned
    assert not pinned & {"pytest", "moto", "mypy", "ruff", "hypothesis"}, "no dev tool in the image"
    (build_stage,) = [s for s in stages() if s.name == "build"]
    (locked, _wheel) = build_stage.runs
    assert "--require-hashes" in locked and "-r image.requirements.txt" in locked


# -- the dashboard ----------------------------------------------------------------------------


def test_every_dashboard_query_names_a_metric_the_operator_exports() -> None:
    dashboard = json.loads((CHART / "files" / "dashboard.json").read_text())
    exported = metrics.names()
    queries = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert queries
    named = {name for q in queries for name in re.findall(r"\bkeykeeper_[a-z_]+\b", q)}
    assert named, "the dashboard queries keykeeper's metrics"
    assert sorted(named - exported) == []
    for query in queries:  # every query names at least one of them
        assert re.search(r"\bkeykeeper_[a-z_]+\b", query), query


def test_the_operator_may_write_exactly_the_secret_types_it_uses() -> None:
    """K10: the admission policy's allow-list is ``SecretType``, no more, no less."""
    policy = next(yaml.safe_load_all((REPO / "deploy" / "admission-policy.yaml").read_text()))
    (rule,) = [
        v["expression"]
        for v in policy["spec"]["validations"]
        if "object.type in" in v["expression"]
    ]
    lists = re.findall(r"object\.type in \[([^\]]+)\]", rule)
    projectable, own = ({*re.findall(r"'([^']+)'", found)} for found in lists)
    assert projectable == {t.value for t in PROJECTABLE}  # anywhere
    assert own == {t.value for t in SecretType} - projectable  # in its own namespace only
    assert "request.namespace == 'keykeeper-system'" in rule


def test_argo_rollouts_restarts_are_deploys_and_opt_in(render: Render) -> None:
    """deploy/argo-rollouts.yaml, rendered only with restarts.argoRollouts (#26)."""
    assert not [d for d in render() if "rollout" in d["metadata"]["name"]]
    docs = render("restarts.argoRollouts=true")
    rendered = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    for doc in yaml.safe_load_all((REPO / "deploy" / "argo-rollouts.yaml").read_text()):
        key = (doc["kind"], doc["metadata"]["name"])
        assert _comparable(rendered[key]) == _comparable(doc), key
    (container,) = deployment(docs)["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["KEYKEEPER_ARGO_ROLLOUTS"] == "true"
    off = render("restarts.argoRollouts=true", "admissionPolicies.enabled=false")
    assert not [d for d in off if d["kind"].startswith("ValidatingAdmissionPolicy")
                and "rollout" in d["metadata"]["name"]]  # fmt: skip
