"""A real Prometheus (Debian's ``prometheus`` package) scraping a running operator, with
keykeeper's alert rules loaded: for tests that see alerts fire and resolve, and the
dashboard's queries return data.

The rules are ``charts/keykeeper/files/alerts.yaml`` with each ``for:`` shortened to
``hold`` (a test cannot wait out 10 minutes); every expression is the shipped one.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from devtools.kmspeers import free_port, wait_for_port

REPO = Path(__file__).resolve().parents[1]
RULES = REPO / "charts" / "keykeeper" / "files" / "alerts.yaml"
DASHBOARD = REPO / "charts" / "keykeeper" / "files" / "dashboard.json"


def shortened_rules(hold: str) -> dict[str, Any]:
    rules: dict[str, Any] = yaml.safe_load(RULES.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = hold
    return rules


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, expression) of every query of the Grafana dashboard."""
    board = json.loads(DASHBOARD.read_text())
    return [(p["title"], t["expr"]) for p in board["panels"] for t in p.get("targets", ())]


@dataclass
class Prometheus:
    workdir: Path
    target: str  # host:port of the operator's /metrics
    hold: str = "5s"
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Prometheus:
        binary = shutil.which("prometheus")
        assert binary, "prometheus is missing: apt-get install -y prometheus (make system-packages)"
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "rules.yaml").write_text(yaml.safe_dump(shortened_rules(self.hold)))
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": ["rules.yaml"],
            "scrape_configs": [
                {
                    "job_name": "keykeeper",
                    # the label the chart's ServiceMonitor gives each replica's series
                    "static_configs": [{"targets": [self.target], "labels": {"pod": "kk-0"}}],
                }
            ],
        }
        (self.workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        with (self.workdir / "prometheus.log").open("ab") as log:
            self.process = subprocess.Popen(
                [
                    binary,
                    f"--config.file={self.workdir / 'prometheus.yml'}",
                    f"--storage.tsdb.path={self.workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--log.level=warn",
                ],
                cwd=self.workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_for_port(self.port)
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
            self.process = None

    def log_tail(self, lines: int = 30) -> str:
        path = self.workdir / "prometheus.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def _get(self, path: str, **params: str) -> Any:
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}{path}?{query}", timeout=10) as answer:
            found = json.loads(answer.read())
        assert found["status"] == "success", found
        return found["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        return list(self._get("/api/v1/query", query=expr, time=str(time.time()))["result"])

    def alerts(self, name: str, state: str = "firing") -> list[dict[str, Any]]:
        """The alerts named ``name`` in ``state`` (firing or pending)."""
        found = self._get("/api/v1/alerts")["alerts"]
        return [a for a in found if a["labels"]["alertname"] == name and a["state"] == state]

    def targets_up(self) -> bool:
        active = self._get("/api/v1/targets")["activeTargets"]
        return bool(active) and all(t["health"] == "up" for t in active)
