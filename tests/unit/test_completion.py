"""The bash completion script names every command and each command's flags."""

from __future__ import annotations

import subprocess

import pytest

from keykeeper.cli import commands as cli


def test_completion_is_valid_bash_and_knows_the_commands(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["completion", "bash"]) == 0
    script = capsys.readouterr().out
    subprocess.run(["bash", "-n"], input=script, text=True, check=True)
    for command in ("seal", "cert", "status", "plan", "rotate", "suspend", "reinstate", "revoke"):
        assert command in script
    assert "--expect-fingerprint" in script and "--all-namespaces" in script
    done = subprocess.run(
        [
            "bash",
            "-c",
            script
            + '\nCOMP_WORDS=(keykeeper sea); COMP_CWORD=1; _keykeeper; echo "${COMPREPLY[@]}"',
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.split() == ["seal"]
