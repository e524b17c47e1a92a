"""The AWS KMS provider (boto3): data keys wrapped with ``Encrypt``/``Decrypt``.

``settings.key_ref`` is a key id, alias (``alias/payments``) or ARN. Each wrap sends
the envelope's provider context (kind, namespace, name, uid) as the **encryption
context**, which KMS binds to the ciphertext and logs in CloudTrail, so a wrapped
key moved to another resource does not decrypt. The KEK id recorded in the envelope
is the full key ARN KMS answers with, and ``Decrypt`` names it (``KeyId``), so an
envelope opens only under the key it says, even after the policy names another.

Credentials: the default chain (IRSA / web identity, instance role, environment), or a
``credentialsSecretRef`` with ``access-key-id``, ``secret-access-key`` and optionally
``session-token``. ``options.region`` and ``options.endpoint`` (VPC and FIPS
endpoints; the tests' peer) are typed in ``provider_options.AwsOptions``.

``options.per-key: "true"`` gives every ApiKey its own KMS key, aliased
``<key_ref>/<uid>`` (``key_ref`` is then an alias prefix such as ``alias/keykeeper``),
so erasure can schedule that key's deletion. AWS never deletes a key at once: it is
unusable from that moment (every Decrypt fails) and destroyed after the deletion
window, 7 to 30 days (``options.deletion-window-days``), during which someone holding
``kms:CancelKeyDeletion`` could still undo it. Status and the audit record say so.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from keykeeper.api.provider_options import AwsOptions, Capability
from keykeeper.crypto.envelope import WrappedKey
from keykeeper.errors import (
    IntegrityError,
    InvalidProviderConfig,
    KeyDisabled,
    ProviderUnavailable,
)
from keykeeper.providers.base import (
    KeyProvider,
    ProviderSettings,
    per_key_capabilities,
    resource_uid,
    typed_options,
)

_DISABLED = {"DisabledException", "NotFoundException", "KMSInvalidStateException"}
_FORGED = {"InvalidCiphertextException", "IncorrectKeyException"}
_DENIED = {
    "AccessDeniedException",
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "IncompleteSignature",
    "InvalidClientTokenId",
}


class AwsKmsProvider(KeyProvider):
    provider_id = "aws"

    def __init__(self, client: Any, key_ref: str, options: AwsOptions) -> None:
        self._kms = client
        self._key_ref = key_ref
        self._options = options
        self._per_key_arns: dict[str, str] = {}

    @property
    def capabilities(self) -> frozenset[Capability]:
        return per_key_capabilities(self._options.per_key)

    def current_kek_id(self) -> str:
        if self._options.per_key:
            return f"{self._key_ref}/<uid>"
        with _translated(self._key_ref):
            described = self._kms.describe_key(KeyId=self._key_ref)
        return str(described["KeyMetadata"]["Arn"])

    def wrap(self, dek: bytes, context: Mapping[str, str]) -> WrappedKey:
        key_id = self._per_key(context) if self._options.per_key else self._key_ref
        with _translated(key_id):
            answer = self._kms.encrypt(
                KeyId=key_id,
                Plaintext=dek,
                EncryptionContext=dict(context),
                EncryptionAlgorithm="SYMMETRIC_DEFAULT",
            )
        return WrappedKey(str(answer["KeyId"]), bytes(answer["CiphertextBlob"]))

    def unwrap(self, wrapped: WrappedKey, context: Mapping[str, str]) -> bytes:
        if not wrapped.blob:
            raise IntegrityError("the wrapped data key is empty")
        with _translated(wrapped.kek_id, denied_is_disabled=True):
            answer = self._kms.decrypt(
                KeyId=wrapped.kek_id,
                CiphertextBlob=wrapped.blob,
                EncryptionContext=dict(context),
                EncryptionAlgorithm="SYMMETRIC_DEFAULT",
            )
        return bytes(answer["Plaintext"])

    def check(self) -> None:
        if self._options.per_key:
            with _translated(self._key_ref):
                self._kms.list_aliases(Limit=1)  # reachable and signed; keys come per ApiKey
            return
        with _translated(self._key_ref):
            state = self._kms.describe_key(KeyId=self._key_ref)["KeyMetadata"]["KeyState"]
        if state != "Enabled":
            raise KeyDisabled(f"the KMS key {self._key_ref} is {state}")

    def destroy_kek(self, kek_id: str) -> bool:
        """Schedule the per-key KMS key's deletion (AWS's shortest window is 7 days); the
        key refuses every Decrypt from now on. False for the shared key."""
        if not self._options.per_key or kek_id.endswith("/<uid>"):
            return False
        with _translated(kek_id):
            try:
                self._kms.schedule_key_deletion(  # the key id: per-key keys are our account's
                    KeyId=kek_id.rsplit("/", 1)[-1],
                    PendingWindowInDays=self._options.deletion_window_days,
                )
            except ClientError as exc:
                if _code(exc) != "KMSInvalidStateException":  # already pending deletion
                    raise
        return True

    def close(self) -> None:
        self._kms.close()

    def _per_key(self, context: Mapping[str, str]) -> str:
        uid = resource_uid(context)
        if uid in self._per_key_arns:
            return self._per_key_arns[uid]
        alias = f"{self._key_ref}/{uid}"
        with _translated(alias):
            try:
                arn = str(self._kms.describe_key(KeyId=alias)["KeyMetadata"]["Arn"])
            except ClientError as exc:
                if _code(exc) != "NotFoundException":
                    raise
                arn = self._create_key(alias, context)
        self._per_key_arns[uid] = arn
        return arn

    def _create_key(self, alias: str, context: Mapping[str, str]) -> str:
        made = self._kms.create_key(
            Description=f"keykeeper KEK of ApiKey {context.get('keykeeper.dev/namespace')}/"
            f"{context.get('keykeeper.dev/name')}",
            KeyUsage="ENCRYPT_DECRYPT",
            Tags=[{"TagKey": "keykeeper.dev/uid", "TagValue": context["keykeeper.dev/uid"]}],
        )
        arn = str(made["KeyMetadata"]["Arn"])
        try:
            self._kms.create_alias(AliasName=alias, TargetKeyId=arn)
        except ClientError as exc:
            if _code(exc) != "AlreadyExistsException":
                raise
            # another replica won the race: use its key, schedule ours away
            self._kms.schedule_key_deletion(KeyId=arn.rsplit("/", 1)[-1], PendingWindowInDays=7)
            return str(self._kms.describe_key(KeyId=alias)["KeyMetadata"]["Arn"])
        return arn


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


@contextmanager
def _translated(key_id: str, *, denied_is_disabled: bool = False) -> Iterator[None]:
    """botocore's errors as keykeeper's tree; messages name the key, never bytes.

    On Decrypt, AccessDenied is also how KMS answers for a key of another account or
    one that no longer exists: the KEK the envelope names is not usable (KeyDisabled)."""
    try:
        yield
    except ClientError as exc:
        code = _code(exc)
        if code in _FORGED:
            raise IntegrityError(
                f"KMS refused the wrapped data key under {key_id} ({code}): it does not "
                "authenticate for this resource"
            ) from None
        if code in _DISABLED:
            raise KeyDisabled(f"the KMS key {key_id} is not usable ({code})") from None
        if code in _DENIED and denied_is_disabled:
            raise KeyDisabled(
                f"the KMS key {key_id} is not usable by the operator's identity ({code})"
            ) from None
        if code in _DENIED:
            raise InvalidProviderConfig(
                f"KMS denied the operator's identity the use of {key_id} ({code})"
            ) from None
        if code in {"ValidationException", "InvalidKeyUsageException"}:
            raise InvalidProviderConfig(f"KMS refused the request for {key_id} ({code})") from None
        raise ProviderUnavailable(f"KMS failed for {key_id} ({code or 'error'})") from None
    except BotoCoreError as exc:  # no connection, timeouts, credentials not found
        name = type(exc).__name__
        if name in {"NoCredentialsError", "PartialCredentialsError", "NoRegionError"}:
            raise InvalidProviderConfig(f"AWS KMS is not configured: {name}") from None
        raise ProviderUnavailable(f"KMS unreachable for {key_id} ({name})") from None


def create(settings: ProviderSettings) -> AwsKmsProvider:
    options = typed_options("aws", settings, AwsOptions)
    if not settings.key_ref:
        raise InvalidProviderConfig("the aws provider needs keyRef: a key id, alias or ARN")
    creds = settings.credentials
    session = boto3.session.Session(
        aws_access_key_id=creds.get("access-key-id") or None,
        aws_secret_access_key=creds.get("secret-access-key") or None,
        aws_session_token=creds.get("session-token") or None,
        region_name=options.region,
    )
    config = Config(
        connect_timeout=options.timeout,
        read_timeout=options.timeout,
        retries={"max_attempts": 1, "mode": "standard"},  # no SDK retry: the guard and
        # the reconciler retry, so a hung KMS holds a worker for one timeout, not several
        user_agent_extra="keykeeper",
    )
    try:
        client = session.client("kms", endpoint_url=options.endpoint, config=config)
    except BotoCoreError as exc:
        raise InvalidProviderConfig(f"AWS KMS is not configured: {type(exc).__name__}") from None
    return AwsKmsProvider(client, settings.key_ref, options)
