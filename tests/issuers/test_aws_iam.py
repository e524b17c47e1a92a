"""The AWS IAM issuer against moto's server over HTTP: access keys minted for the
policy's user, AWS's two-key limit as the overlap, revocation, listing, verification."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from devtools.kmspeers import CREDENTIALS, REGION, Peer, moto

from keykeeper.errors import IssuerRefused
from keykeeper.issuers.aws_iam import AwsIamIssuer, user_name
from keykeeper.issuers.base import KeyIdentity, Verified

KEY = KeyIdentity("team", "deploy", "uid-2")
TEMPLATE = "svc-{{ .namespace }}-{{ .name }}"


@pytest.fixture(scope="module")
def peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peer]:
    server = moto(tmp_path_factory.mktemp("moto")).start()
    iam = boto3.client(
        "iam",
        endpoint_url=server.endpoint,
        region_name=REGION,
        aws_access_key_id=CREDENTIALS["access-key-id"],
        aws_secret_access_key=CREDENTIALS["secret-access-key"],
    )
    iam.create_user(UserName="svc-team-deploy")
    yield server
    server.kill()


def test_mint_overlap_revoke_and_list(peer: Peer) -> None:
    async def scenario() -> None:
        issuer = AwsIamIssuer(TEMPLATE, REGION, CREDENTIALS, peer.endpoint)
        try:
            one = await issuer.mint(KEY, 1)
            assert sorted(one.fields) == ["access-key-id", "secret-access-key"]
            assert one.id == one.fields["access-key-id"].decode()
            assert "secret-access-key" not in repr(one) or "fields=" in repr(one)
            two = await issuer.mint(KEY, 2)  # the overlap: AWS's two keys per user
            assert await issuer.live(KEY) == sorted([one.id, two.id])
            with pytest.raises(IssuerRefused, match="two access keys"):
                await issuer.mint(KEY, 3)
            assert await issuer.verify(KEY, two) is Verified.WORKS
            await issuer.revoke(KEY, one.id)
            await issuer.revoke(KEY, one.id)  # already gone: revoked
            assert await issuer.live(KEY) == [two.id]
            await issuer.revoke(KEY, two.id)
            assert await issuer.live(KEY) == []
        finally:
            await issuer.close()

    asyncio.run(scenario())


@pytest.mark.parametrize(
    "template",
    [
        "{{ .value }}",
        '{{ exec "id" }}',
        "svc/{{ .namespace }}/{{ .name }}",
        "x" * 65 + "{{ .namespace }}{{ .name }}",
        "ci-deployer",  # a fixed user: shared, one key's recovery could revoke another's
        "svc-{{ .name }}",
    ],
    ids=["value", "exec", "slash", "too-long", "fixed-user", "name-only"],
)
def test_the_user_template_takes_only_namespace_and_name(template: str) -> None:
    with pytest.raises(IssuerRefused):
        user_name(template, KEY)
    assert user_name(TEMPLATE, KEY) == "svc-team-deploy"


def test_a_missing_user_is_the_configurations_error(peer: Peer, tmp_path: Path) -> None:
    issuer = AwsIamIssuer("nobody-{{ .namespace }}-{{ .name }}", REGION, CREDENTIALS, peer.endpoint)
    with pytest.raises(IssuerRefused, match="NoSuchEntity"):
        asyncio.run(issuer.mint(KEY, 1))
