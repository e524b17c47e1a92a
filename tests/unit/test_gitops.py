"""``keykeeper cert`` and ``keykeeper seal`` offline: the manifest, the raw string, the
pinned fingerprint, where the value comes from, and one clear line for each refusal."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import yaml

from keykeeper.cli import commands as cli
from keykeeper.cli import seal as gitops
from keykeeper.cli.cluster import CommandError
from keykeeper.crypto.sealed import SealingKeyPair, open_sealed
from keykeeper.shaping import fields as key_fields

PAIR = SealingKeyPair.generate()
KEYS = {PAIR.key_id: PAIR}


@pytest.fixture
def cert(tmp_path: Path) -> Path:
    path = tmp_path / "pub.pem"
    path.write_text(gitops.to_pem(PAIR.public))
    return path


def run(
    argv: list[str], capsys: pytest.CaptureFixture[str], stdin: bytes | None = None
) -> tuple[int, str, str]:
    with pytest.MonkeyPatch.context() as patch:
        if stdin is not None:
            patch.setattr("sys.stdin", _Stdin(stdin))
        code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


class _Stdin(io.TextIOWrapper):
    def __init__(self, data: bytes) -> None:
        super().__init__(io.BytesIO(data))

    def isatty(self) -> bool:
        return False


def test_pem_round_trip_keeps_the_key() -> None:
    assert gitops.from_pem(gitops.to_pem(PAIR.public)) == PAIR.public


def test_seal_prints_a_manifest_whose_value_opens_only_for_its_name(
    cert: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["seal", "-n", "team-a", "--name", "stripe", "--policy", "p", "--cert", str(cert)]
    code, out, err = run([*argv, "--project", "team-b"], capsys, stdin=b"sk_live_123\n")
    assert code == 0, err
    body = yaml.safe_load(out)
    assert body["kind"] == "ApiKey" and body["metadata"] == {
        "name": "stripe",
        "namespace": "team-a",
    }
    assert body["spec"]["projections"] == [{"namespace": "team-b"}]
    sealed = body["spec"]["source"]["sealed"]
    assert open_sealed(sealed, "team-a", "stripe", "p", KEYS).value == b"sk_live_123", "stripped"
    with pytest.raises(Exception, match="does not open"):
        open_sealed(sealed, "team-a", "other", "p", KEYS)
    with pytest.raises(Exception, match="sealed for policy p, not q"):
        open_sealed(sealed, "team-a", "stripe", "q", KEYS)
    assert "sk_live_123" not in out + err


def test_raw_and_json_outputs(
    cert: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    value = tmp_path / "value"
    value.write_bytes(b"v\n")  # a file is sealed exactly as it is
    base = ["seal", "-n", "ns", "--name", "k", "--cert", str(cert), "--from-file", str(value)]
    code, out, _ = run([*base, "--raw", "--policy", "p"], capsys)
    assert code == 0 and out.startswith("kk-sealed-v2:")
    assert open_sealed(out.strip(), "ns", "k", "p", KEYS).value == b"v\n"
    code, out, _ = run([*base, "--policy", "p", "-o", "json"], capsys)
    assert code == 0 and json.loads(out)["spec"]["policy"] == "p"


def test_seal_can_say_when_the_value_expires(
    cert: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["seal", "-n", "ns", "--name", "k", "--policy", "p", "--cert", str(cert)]
    code, out, err = run([*argv, "--expires-at", "2027-03-01T12:00:00+01:00"], capsys, stdin=b"v")
    assert code == 0, err
    assert yaml.safe_load(out)["spec"]["expiresAt"] == "2027-03-01T11:00:00Z"
    with pytest.raises(SystemExit):  # argparse's usage error
        run([*argv, "--expires-at", "next tuesday"], capsys, stdin=b"v")
    assert "not an RFC 3339 time" in capsys.readouterr().err


def test_a_value_on_the_command_line_warns(cert: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["seal", "-n", "ns", "--name", "k", "--cert", str(cert), "--raw", "--value", "x"]
    code, _, err = run([*argv, "--policy", "p"], capsys)
    assert code == 0 and "shell history" in err


@pytest.mark.parametrize(
    ("extra", "stdin", "message"),
    [
        (
            ["--raw", "-P", "p", "--expect-fingerprint", "sha256:" + "0" * 64],
            b"v",
            "not the expected",
        ),
        (["--raw", "-P", "p"], b"", "empty"),
        ([], b"v", "--policy is needed"),
        (["--raw"], b"v", "--policy is needed"),
        (["--raw", "-P", "../p"], b"v", "not an object name"),
        (["--raw", "-P", "p", "--name", "../evil"], b"v", "not an object name"),
        (["--raw", "-P", "p", "--project", "Bad_NS"], b"v", "not a namespace name"),
    ],
)
def test_refusals_are_one_line_and_exit_1(
    cert: Path, capsys: pytest.CaptureFixture[str], extra: list[str], stdin: bytes, message: str
) -> None:
    argv = ["seal", "-n", "ns", "--name", "k", "--cert", str(cert), *extra]
    code, out, err = run(argv, capsys, stdin=stdin)
    assert code == 1 and out == ""
    assert message in err and err.count("\n") == 1


def test_the_pinned_fingerprint_passes(cert: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["seal", "-n", "ns", "--name", "k", "--cert", str(cert), "--raw", "-P", "p"]
    code, _, err = run([*argv, "--expect-fingerprint", PAIR.public.fingerprint], capsys, b"v")
    assert code == 0, err


def test_a_configmap_that_names_another_key_is_refused() -> None:
    other = SealingKeyPair.generate().public
    data = {
        "publicKey": __import__("base64").b64encode(PAIR.public.raw).decode(),
        "keyId": other.key_id,
        "fingerprint": other.fingerprint,
    }
    with pytest.raises(CommandError, match="another key"):
        gitops.from_configmap(data)


def test_a_malformed_cert_file_is_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("hello")
    code, _, err = run(
        ["seal", "-n", "ns", "--name", "k", "--raw", "-P", "p", "--cert", str(bad)], capsys, b"v"
    )
    assert code == 1 and "not a keykeeper sealing public key" in err


def test_seal_fields_makes_one_value_of_named_fields(
    cert: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """#24: ``--field name=@file`` and ``--field name=value``: one sealed plaintext the
    operator reads as a key with fields."""
    secret = tmp_path / "secret"
    secret.write_bytes(b"wJalrXUtnFEMI")
    argv = ["seal", "-n", "ns", "--name", "k", "--cert", str(cert), "--raw", "-P", "p"]
    fields = ["--field", "access-key-id=AKIA1", "--field", f"secret-access-key=@{secret}"]
    code, out, err = run([*argv, *fields], capsys)
    assert code == 0, err
    opened = open_sealed(out.strip(), "ns", "k", "p", KEYS).value
    assert key_fields.decode(opened, ("access-key-id", "secret-access-key")) == {
        "access-key-id": b"AKIA1",
        "secret-access-key": b"wJalrXUtnFEMI",
    }
    assert "wJalrXUtnFEMI" not in out + err
    code, _, err = run([*argv, "--field", "a.previous=x"], capsys)
    assert code != 0 and ".previous" in err
