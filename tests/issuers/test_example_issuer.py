"""examples/issuer/issuer.py, the issuer a team starts from, run as its README says and
driven by keykeeper's own webhook client over TLS."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from devtools.fakes import tls
from devtools.kmspeers import free_port, wait_for_port

from keykeeper.errors import IssuerRefused
from keykeeper.issuers.base import KeyIdentity, Verified
from keykeeper.issuers.webhook import WebhookIssuer

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "issuer" / "issuer.py"
KEY = KeyIdentity("team", "svc", "uid-9")


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, bytes, str]]:
    where = tmp_path_factory.mktemp("example-issuer")
    cert = tls.make(where)
    (where / "token").write_text("t0ken\n")
    port = free_port()
    argv = [sys.executable, str(EXAMPLE), "--cert", str(cert.cert_file), "--key"]
    argv += [str(cert.key_file), "--token-file", str(where / "token"), "--port", str(port)]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
    wait_for_port(port)
    yield f"https://localhost:{port}/v1", cert.ca_file.read_bytes(), "t0ken"
    process.kill()
    process.wait()


def test_the_example_issuer_keeps_the_contract(example: tuple[str, bytes, str]) -> None:
    url, ca, token = example

    async def scenario() -> None:
        issuer = WebhookIssuer(url, token, ca)
        try:
            one = await issuer.mint(KEY, 1)
            assert (await issuer.mint(KEY, 1)).fields == one.fields  # the same idempotency key
            two = await issuer.mint(KEY, 2)
            assert await issuer.verify(KEY, two) is Verified.WORKS
            await issuer.revoke(KEY, one.id)
            await issuer.revoke(KEY, one.id)  # already gone: revoked
            assert await issuer.verify(KEY, one) is Verified.FAILS
        finally:
            await issuer.close()
        wrong = WebhookIssuer(url, "wrong", ca)
        try:
            with pytest.raises(IssuerRefused, match="401"):
                await wrong.mint(KEY, 3)
        finally:
            await wrong.close()

    asyncio.run(scenario())
