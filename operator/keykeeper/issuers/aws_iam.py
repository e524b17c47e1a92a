"""AWS IAM access keys as issued keys (boto3 ``iam``; ``sts`` to verify).

A version is ``CreateAccessKey`` for the policy's user: fields ``access-key-id`` and
``secret-access-key``, upstream id the AccessKeyId. AWS allows two keys per user,
which is the overlap: the new key beside the old one for the grace period, then
``UpdateAccessKey Inactive`` and ``DeleteAccessKey`` for the old. IAM keeps no
idempotency key, so ``live`` lists the user's keys, and the rotation revokes one it
cannot account for (a mint whose answer a crash lost). ``verify`` signs
``GetCallerIdentity`` with the new key.

The user name comes from the policy's template (``svc-{{ .namespace }}-{{ .name }}``),
rendered with this key's namespace and name only, both DNS-1123 and so IAM-safe; the
result is held to IAM's own rule, and it must name both, so a user is one ApiKey's.
The boto3 calls block, so they run on a thread.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from keykeeper.errors import IssuerRefused, IssuerUnavailable, TemplateError
from keykeeper.issuers.base import Issuer, KeyIdentity, Minted, Verified
from keykeeper.shaping.evaluate import FUNCTION_NAMES, Inputs, Renderer
from keykeeper.shaping.syntax import Call, Input, Part, Pipeline, parse

_USER = re.compile(r"[\w+=,.@-]{1,64}")
_TRANSIENT = frozenset(
    {"Throttling", "ThrottlingException", "ServiceUnavailable", "ServiceFailure"}
)
_CONFIG = Config(
    retries={"max_attempts": 2, "mode": "standard"}, connect_timeout=5, read_timeout=15
)
FIELDS = ("access-key-id", "secret-access-key")


def user_name(template: str, key: KeyIdentity) -> str:
    """The IAM user for ``key``: the policy's template with its namespace and name."""
    try:
        parts = parse(template, "userName", FUNCTION_NAMES)
        facts = Inputs(None, namespace=key.namespace, name=key.name)
        name = Renderer(facts, 256).render(parts)
    except TemplateError as exc:
        raise IssuerRefused(f"the issuer's userName: {exc}") from None
    if not {"namespace", "name"} <= _inputs(parts):
        # a user shared by two ApiKeys would let one key's crash recovery revoke the
        # other's access keys (and AWS's two keys per user leave no room for overlap)
        raise IssuerRefused(
            "the issuer's userName must name the key ({{ .namespace }} and {{ .name }}): "
            "an IAM user's access keys belong to one ApiKey"
        )
    if not _USER.fullmatch(name):
        raise IssuerRefused("the issuer's userName does not render to an IAM user name")
    return name


def _inputs(parts: tuple[Part, ...]) -> set[str]:
    """The inputs a parsed template reads."""
    found: set[str] = set()

    def walk(node: object) -> None:
        if isinstance(node, Input):
            found.add(node.name)
        elif isinstance(node, Pipeline):
            for command in node.commands:
                walk(command)
        elif isinstance(node, Call):
            for arg in node.args:
                walk(arg)

    for part in parts:
        walk(part)
    return found


class AwsIamIssuer(Issuer):
    issuer_id = "awsIam"

    def __init__(
        self,
        user_template: str,
        region: str,
        credentials: Mapping[str, str],
        endpoint: str = "",
    ) -> None:
        self._template, self._region, self._endpoint = user_template, region, endpoint or None
        self._iam = self._client("iam", credentials)

    def __repr__(self) -> str:  # credentials never reach a log through repr()
        return f"AwsIamIssuer(region={self._region!r}, endpoint={self._endpoint!r})"

    def _client(self, service: str, credentials: Mapping[str, str]) -> Any:
        return boto3.client(
            service,
            region_name=self._region,
            endpoint_url=self._endpoint,
            aws_access_key_id=credentials.get("access-key-id"),
            aws_secret_access_key=credentials.get("secret-access-key"),
            aws_session_token=credentials.get("session-token") or None,
            config=_CONFIG,
        )

    async def mint(self, key: KeyIdentity, version: int) -> Minted:
        user = user_name(self._template, key)
        with _translated("CreateAccessKey", user):
            made = await asyncio.to_thread(self._iam.create_access_key, UserName=user)
        access = made["AccessKey"]
        fields = {
            "access-key-id": str(access["AccessKeyId"]).encode(),
            "secret-access-key": str(access["SecretAccessKey"]).encode(),
        }
        return Minted(str(access["AccessKeyId"]), fields)

    async def verify(self, key: KeyIdentity, minted: Minted) -> Verified:
        credentials = {name: value.decode() for name, value in minted.fields.items()}
        sts = self._client("sts", credentials)
        try:
            await asyncio.to_thread(sts.get_caller_identity)
        except ClientError:
            return Verified.FAILS
        except BotoCoreError as exc:
            raise IssuerUnavailable(
                f"AWS STS: GetCallerIdentity failed: {type(exc).__name__}"
            ) from None
        finally:
            sts.close()
        return Verified.WORKS

    async def revoke(self, key: KeyIdentity, upstream_id: str) -> None:
        user = user_name(self._template, key)
        for call, method in (("UpdateAccessKey", "update"), ("DeleteAccessKey", "delete")):
            with _translated(call, user):
                try:
                    if method == "update":
                        await asyncio.to_thread(
                            self._iam.update_access_key,
                            UserName=user,
                            AccessKeyId=upstream_id,
                            Status="Inactive",
                        )
                    else:
                        await asyncio.to_thread(
                            self._iam.delete_access_key, UserName=user, AccessKeyId=upstream_id
                        )
                except ClientError as exc:
                    if _code(exc) != "NoSuchEntity":  # already gone: revoked
                        raise
                    return

    async def live(self, key: KeyIdentity) -> list[str] | None:
        user = user_name(self._template, key)
        with _translated("ListAccessKeys", user):
            listed = await asyncio.to_thread(self._iam.list_access_keys, UserName=user)
        return sorted(str(k["AccessKeyId"]) for k in listed.get("AccessKeyMetadata", []))

    async def close(self) -> None:
        self._iam.close()


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


@contextmanager
def _translated(call: str, user: str) -> Iterator[None]:
    """boto3's errors as the issuer error tree: no message holds a credential."""
    try:
        yield
    except ClientError as exc:
        code = _code(exc)
        if code in _TRANSIENT:
            raise IssuerUnavailable(f"AWS IAM: {call} for {user} throttled ({code})") from None
        if code == "LimitExceeded":
            raise IssuerRefused(
                f"AWS IAM: {call} for {user}: the user already has its two access keys"
            ) from None
        raise IssuerRefused(f"AWS IAM: {call} for {user} refused ({code})") from None
    except BotoCoreError as exc:
        raise IssuerUnavailable(
            f"AWS IAM: {call} for {user} failed: {type(exc).__name__}"
        ) from None
