"""Settings: bad values stop the start with what is wrong, never a silent default."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from keykeeper.runtime.settings import Settings


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        pytest.param({"KEYKEEPER_LOG_FORMAT": "xml"}, "log format 'xml'", id="log-format"),
        pytest.param({"KEYKEEPER_WORKERS": "0"}, "workers must be 1 to", id="no-workers"),
        pytest.param({"KEYKEEPER_WORKERS": "100000"}, "workers must be 1 to", id="too-many"),
        pytest.param({"KEYKEEPER_WORKERS": "many"}, "not a whole number", id="workers-text"),
        pytest.param({"KEYKEEPER_METRICS_AUTH": "basic"}, "metrics auth", id="metrics-auth"),
        pytest.param({"KEYKEEPER_OWNER_FROM": "secret"}, "owner from", id="owner-from"),
        pytest.param({"KEYKEEPER_OWNER_LABEL": "not a key"}, "not a label key", id="owner-label"),
        pytest.param({"KEYKEEPER_PER_KEY_METRICS": "maybe"}, "not a boolean", id="per-key"),
        pytest.param({"KEYKEEPER_ARGO_ROLLOUTS": "2"}, "not a boolean", id="argo"),
        pytest.param(
            {"KEYKEEPER_AUDIT_SEGMENT_BYTES": "100"}, "audit segments must be", id="tiny-segment"
        ),
        pytest.param(
            {"KEYKEEPER_AUDIT_SEGMENTS_KEPT": "-1"}, "audit segments must be", id="kept-negative"
        ),
        pytest.param({"KEYKEEPER_FIPS": "yes"}, "not a boolean", id="flag"),
        pytest.param({"KEYKEEPER_SEALING_RENEWAL": "soon"}, "duration", id="duration"),
        pytest.param({"KEYKEEPER_SEALING_CHECK": "-1"}, "must be positive", id="interval"),
        pytest.param({"KEYKEEPER_SEALED_V1_UNTIL": "next june"}, "not a date", id="v1-until"),
    ],
)
def test_a_bad_setting_is_refused_with_its_reason(env: dict[str, str], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        Settings.from_env(env)


def test_defaults_and_good_values_pass() -> None:
    assert Settings.from_env({}) == Settings()
    assert (
        Settings.from_env({"KEYKEEPER_WORKERS": "8", "KEYKEEPER_LOG_FORMAT": "plain"}).workers == 8
    )
    until = Settings.from_env({"KEYKEEPER_SEALED_V1_UNTIL": "2027-06-30"}).sealed_v1_until
    assert until is not None and until.isoformat() == "2027-06-30T00:00:00+00:00"


def test_keykeeper_run_refuses_a_bad_setting_before_it_connects() -> None:
    env = {**os.environ, "KEYKEEPER_LOG_FORMAT": "xml", "KUBECONFIG": "/nonexistent"}
    done = subprocess.run(
        [sys.executable, "-m", "keykeeper.cli", "run"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "keykeeper run: invalid setting: log format 'xml'" in done.stderr
    assert "Traceback" not in done.stderr
