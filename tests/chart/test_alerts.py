"""keykeeper's alerts: promtool checks the rules and runs their unit tests (each alert
firing and not firing), every metric they name is one the operator exports, and the
chart's PrometheusRule carries exactly those rules."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import yaml

from keykeeper.runtime import metrics
from tests.chart.conftest import Render

HERE = Path(__file__).resolve().parent
RULES = HERE.parents[1] / "charts" / "keykeeper" / "files" / "alerts.yaml"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("promtool")
    assert tool, "promtool is missing: apt-get install -y prometheus (make system-packages)"
    return subprocess.run([tool, *args], capture_output=True, text=True, check=False, cwd=HERE)


def test_the_rules_are_valid_and_each_alert_fires_and_stays_quiet_as_tested() -> None:
    checked = promtool("check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = promtool("test", "rules", "alerts.test.yaml")
    assert tested.returncode == 0 and "SUCCESS" in tested.stdout, tested.stdout + tested.stderr


def test_every_alert_is_tested_and_names_only_exported_metrics() -> None:
    rules = [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]
    tests = yaml.safe_load((HERE / "alerts.test.yaml").read_text())["tests"]
    tested = {a["alertname"] for t in tests for a in t["alert_rule_test"] if a["exp_alerts"]}
    assert {r["alert"] for r in rules} == tested, "an alert with no firing test"
    named = {n for r in rules for n in re.findall(r"\bkeykeeper_[a-z_]+\b", r["expr"])}
    assert named and sorted(named - metrics.names()) == []


def test_the_chart_renders_the_rules_only_when_asked(render: Render) -> None:
    assert not [d for d in render() if d["kind"] == "PrometheusRule"]
    (rule,) = [d for d in render("prometheusRule.enabled=true") if d["kind"] == "PrometheusRule"]
    assert rule["spec"] == yaml.safe_load(RULES.read_text())
