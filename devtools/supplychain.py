"""The image's supply chain: its SBOM, and an audit of its locked set.

``python -m devtools.supplychain sbom`` builds the image (buildah, its layers cached by
the Dockerfile's inputs: ``devtools.image``) and writes a CycloneDX SBOM of the image's
venv, every distribution in it with its version, to ``dist/sbom.cdx.json``.

``python -m devtools.supplychain audit`` checks ``image.requirements.txt`` (uv.lock's
export for the image) with pip-audit. Where no vulnerability database answers (this
machine reaches PyPI's package index but not its JSON API or OSV), pip-audit skips
every package and still prints "No known vulnerabilities found"; here that is reported
as what it is, NOT AUDITED, never as a clean result. Known vulnerabilities fail.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class Verdict:
    audited: int
    skipped: int
    vulnerable: dict[str, list[str]]  # package -> advisory ids

    @property
    def ok(self) -> bool:
        return not self.vulnerable

    def __str__(self) -> str:
        if self.vulnerable:
            found = "; ".join(
                f"{name}: {', '.join(ids)}" for name, ids in sorted(self.vulnerable.items())
            )
            return f"VULNERABLE: {found}"
        if not self.audited:
            return (
                f"NOT AUDITED: no vulnerability database answered for any of the {self.skipped} "
                "packages (run `make audit` where PyPI's JSON API or OSV is reachable)"
            )
        tail = f"; {self.skipped} not audited (no record)" if self.skipped else ""
        return f"OK: {self.audited} packages audited, no known vulnerability{tail}"


def judge(report: dict[str, Any]) -> Verdict:
    """pip-audit's JSON report (``-f json``), judged."""
    audited, skipped, vulnerable = 0, 0, {}
    for dependency in report.get("dependencies") or []:
        if dependency.get("skip_reason"):
            skipped += 1
            continue
        audited += 1
        ids = [str(v.get("id")) for v in dependency.get("vulns") or []]
        if ids:
            vulnerable[str(dependency.get("name"))] = ids
    return Verdict(audited, skipped, vulnerable)


def audit(requirements: Path = REPO / "image.requirements.txt") -> Verdict | str:
    """The verdict, or why pip-audit could not give one (said, never taken as clean)."""
    command = [
        str(BIN / "pip-audit"),
        *("-r", str(requirements), "--disable-pip", "--require-hashes"),
        *("-f", "json", "--progress-spinner", "off"),
    ]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    except subprocess.TimeoutExpired:
        return "NOT AUDITED: pip-audit did not answer within 10 minutes"
    try:
        report = json.loads(done.stdout)
    except ValueError:
        return f"NOT AUDITED: pip-audit failed: {done.stderr.strip()[-500:]}"
    return judge(report)


def sbom(out: Path = REPO / "dist" / "sbom.cdx.json") -> Path:
    """The SBOM of the image's venv, read from the built image's filesystem (mounted):
    what a scanner is given is what the image holds."""
    from devtools import image

    built = image.build()
    out.parent.mkdir(parents=True, exist_ok=True)
    with image.Mounted(built) as root:
        python = root / "opt" / "keykeeper" / "bin" / "python"
        subprocess.run(
            [
                str(BIN / "cyclonedx-py"),
                "environment",
                "--output-format",
                "JSON",
                "--output-file",
                str(out),
                str(python),
            ],
            check=True,
            timeout=600,
        )
    return out


def main(argv: list[str]) -> int:
    if argv[:1] == ["sbom"]:
        path = sbom()
        components = json.loads(path.read_text()).get("components") or []
        print(f"{path}: CycloneDX, {len(components)} components")
        return 0
    if argv[:1] == ["audit"]:
        verdict = audit()
        print(verdict)
        return 0 if isinstance(verdict, str) or verdict.ok else 1
    print("usage: python -m devtools.supplychain sbom|audit", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
