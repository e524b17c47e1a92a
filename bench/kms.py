"""Per provider, over a run of N keys (default 1,000): seals and opens per second and
the KMS calls each key version costs, through the guard the operator puts in front of
every remote provider (rate limit, breaker, data-key cache).

Each key gets one version (seal: one wrap), which is then opened three times, as three
projections across reconciles would (the goal: at most one unwrap per version while
cached; a wrap seeds the cache, so a fresh version costs none). A second pass opens
every version again after the cache is dropped, as after an operator restart: exactly
one unwrap per version. Peers: local (no KMS), pkcs11 (SoftHSM2), aws (moto's server
and local-kms), gcp and azure (the in-repo TLS fakes, driven by the real SDKs).

Run: `.venv/bin/python bench/kms.py [--keys N] [--only aws-moto,...] [--json PATH]`.
Prints a table and writes JSON (default bench/results/kms.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from devtools import kmspeers
from devtools.fakes import azurekv, gcpkms, tls
from devtools.softhsm import init_token

from keykeeper.api.models import Kms
from keykeeper.crypto.envelope import Binding, KeyWrapper, open_envelope, seal_envelope
from keykeeper.crypto.kdf import MasterKey
from keykeeper.providers import KeyProvider, ProviderSettings, registry
from keykeeper.providers.cache import guarded
from keykeeper.providers.guard import Guarded
from keykeeper.providers.local import LocalProvider

VALUE = b"k" * 64
OPENS_PER_VERSION = 3
Setup = Callable[[ExitStack, Path], tuple[KeyProvider, Kms]]


def _kms(provider: str, key_ref: str, options: dict[str, str]) -> Kms:
    # the bench measures the provider, not the default ceiling: a high rate limit
    return Kms.model_validate(
        {"provider": provider, "keyRef": key_ref, "options": {"rate": "5000", **options}}
    )


def local(_: ExitStack, __: Path) -> tuple[KeyProvider, Kms]:
    return LocalProvider(MasterKey.generate()), Kms()


def pkcs11(_: ExitStack, tmp: Path) -> tuple[KeyProvider, Kms]:
    token = init_token(tmp / "softhsm")
    options = {"module": token.module, "token": token.label, "create": "true"}
    kms = Kms.model_validate({"provider": "pkcs11", "keyRef": "bench-kek", "options": options})
    settings = ProviderSettings("bench-kek", {"pin": token.pin}, options)
    return registry.create("pkcs11", settings), kms


def _aws(make: Callable[[Path], kmspeers.Peer]) -> Setup:
    def setup(stack: ExitStack, tmp: Path) -> tuple[KeyProvider, Kms]:
        peer = make(tmp).start()
        stack.callback(peer.kill)
        alias = f"alias/bench-{uuid.uuid4().hex[:6]}"
        peer.create_key(alias)
        options = {"endpoint": peer.endpoint, "region": kmspeers.REGION}
        kms = _kms("aws", alias, options)
        settings = ProviderSettings(alias, dict(kmspeers.CREDENTIALS), dict(kms.options))
        return registry.create("aws", settings), kms

    return setup


def _fakes(tmp: Path) -> tls.ServerCert:
    cert = tls.make(tmp / "tls")
    os.environ["GRPC_DEFAULT_SSL_ROOTS_FILE_PATH"] = str(cert.ca_file)
    os.environ["REQUESTS_CA_BUNDLE"] = str(cert.ca_file)
    return cert


def gcp(stack: ExitStack, tmp: Path) -> tuple[KeyProvider, Kms]:
    cert = _fakes(tmp)
    fake = gcpkms.FakeCloudKms(cert).start()
    stack.callback(fake.stop)
    account, public = gcpkms.service_account()
    fake.add_principal(account["client_email"], public)
    name = "projects/bench/locations/global/keyRings/kk/cryptoKeys/kek"
    fake.create_key(name, account["client_email"])
    kms = _kms("gcp", name, {"endpoint": fake.endpoint})
    creds = {"service-account.json": json.dumps(account)}
    return registry.create("gcp", ProviderSettings(name, creds, dict(kms.options))), kms


def azure(stack: ExitStack, tmp: Path) -> tuple[KeyProvider, Kms]:
    cert = _fakes(tmp)
    fake = azurekv.FakeKeyVault(cert).start()
    stack.callback(fake.stop)
    fake.add_client("bench-app", "bench-secret")
    fake.create_key("kek", "bench-app")
    options = {"authority": fake.authority, "verify-challenge-resource": "false"}
    kms = _kms("azure", f"{fake.url}/keys/kek", options)
    creds = {"tenant-id": azurekv.TENANT, "client-id": "bench-app", "client-secret": "bench-secret"}
    settings = ProviderSettings(kms.key_ref, creds, dict(kms.options))
    return registry.create("azure", settings), kms


PEERS: dict[str, Setup] = {
    "local": local,
    "pkcs11": pkcs11,
    "aws-moto": _aws(kmspeers.moto),
    "aws-local-kms": _aws(kmspeers.local_kms),
    "gcp": gcp,
    "azure": azure,
}


@contextmanager
def timed() -> Iterator[list[float]]:
    out: list[float] = []
    start = time.perf_counter()
    yield out
    out.append(time.perf_counter() - start)


def measure(name: str, setup: Setup, keys: int) -> dict[str, object]:
    with ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        raw, kms = setup(stack, Path(tmp))
        provider = raw if kms.provider == "local" else guarded(raw, kms)
        stack.callback(provider.close)

        def resolve(_: str) -> KeyWrapper:
            return provider

        bindings = [Binding("bench", f"key-{n}", str(uuid.uuid4()), 1) for n in range(keys)]
        with timed() as sealing:
            blobs = [seal_envelope(VALUE, b, provider) for b in bindings]
        with timed() as opening:
            for _ in range(OPENS_PER_VERSION):
                for blob, binding in zip(blobs, bindings, strict=True):
                    assert open_envelope(blob, binding, resolve) == VALUE
        calls = dict(provider.calls) if isinstance(provider, Guarded) else {}
        if isinstance(provider, Guarded):
            provider.forget()  # as after a restart: the cache is empty
            before = provider.calls["unwrap"]
            with timed() as cold:
                for blob, binding in zip(blobs, bindings, strict=True):
                    open_envelope(blob, binding, resolve)
            cold_unwraps = provider.calls["unwrap"] - before
        else:
            cold, cold_unwraps = [0.0], 0
    return {
        "provider": name,
        "keys": keys,
        "seals_per_s": round(keys / sealing[0], 1),
        "opens_per_s": round(keys * OPENS_PER_VERSION / opening[0], 1),
        "cold_opens_per_s": round(keys / cold[0], 1) if cold[0] else None,
        "wraps_per_version": round(calls.get("wrap", 0) / keys, 3),
        "unwraps_per_version_cached": round(calls.get("unwrap", 0) / keys, 3),
        "unwraps_per_version_after_restart": round(cold_unwraps / keys, 3),
        "kms_calls": calls,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=1000)
    parser.add_argument("--only", default=",".join(PEERS))
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "results/kms.json")
    args = parser.parse_args()
    rows = [measure(name, PEERS[name], args.keys) for name in args.only.split(",")]
    header = (
        f"{'provider':<14} {'seal/s':>9} {'open/s':>9} {'cold open/s':>12} "
        f"{'wrap/ver':>9} {'unwrap/ver':>11} {'after restart':>14}"
    )
    print(f"{args.keys} keys, {OPENS_PER_VERSION} opens per version, {platform.node()}")
    print(header)
    for r in rows:
        print(
            f"{r['provider']:<14} {r['seals_per_s']:>9} {r['opens_per_s']:>9} "
            f"{r['cold_opens_per_s'] or '-':>12} {r['wraps_per_version']:>9} "
            f"{r['unwraps_per_version_cached']:>11} {r['unwraps_per_version_after_restart']:>14}"
        )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps({"machine": platform.platform(), "rows": rows}, indent=2) + "\n"
    )


if __name__ == "__main__":
    main()
