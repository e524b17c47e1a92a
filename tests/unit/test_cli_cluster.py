"""The CLI's one cluster client: the namespace comes from the context in use.

``--context prod`` must act in prod's namespace, not in the current context's: with the
current context's namespace, ``kubectl keykeeper suspend stripe --context prod`` would
suspend (or revoke) a key of the same name in another namespace.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from keykeeper.cli.cluster import CommandError, UserCluster


@pytest.fixture
def kubeconfig(tmp_path: Path) -> str:
    cluster = {"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}
    user = {"name": "u", "user": {"token": "t"}}
    contexts = [
        {"name": "dev", "context": {"cluster": "c", "user": "u", "namespace": "team-dev"}},
        {"name": "prod", "context": {"cluster": "c", "user": "u", "namespace": "team-prod"}},
        {"name": "bare", "context": {"cluster": "c", "user": "u"}},
    ]
    path = tmp_path / "config"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [cluster],
                "users": [user],
                "contexts": contexts,
                "current-context": "dev",
            }
        )
    )
    return str(path)


@pytest.mark.parametrize(
    ("context", "namespace"),
    [
        pytest.param(None, "team-dev", id="current-context"),
        pytest.param("prod", "team-prod", id="named-context-not-the-current-one"),
        pytest.param("bare", "default", id="context-without-namespace"),
    ],
)
def test_the_default_namespace_is_the_context_in_use(
    kubeconfig: str, context: str | None, namespace: str
) -> None:
    assert UserCluster(kubeconfig, context).default_namespace == namespace


def test_an_unknown_context_is_one_clear_error(kubeconfig: str) -> None:
    with pytest.raises(CommandError, match="no context 'staging'"):
        _ = UserCluster(kubeconfig, "staging").default_namespace


def test_no_cluster_is_asked_for_until_one_is_needed(kubeconfig: str) -> None:
    cluster = UserCluster(kubeconfig + ".missing")
    with pytest.raises(CommandError, match="no cluster"):
        cluster.apikeys("team-dev")
