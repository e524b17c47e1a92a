"""``keykeeper cert`` and ``keykeeper seal``: a value that can travel through git.

``cert`` reads the cluster's sealing public key (the ConfigMap
``keykeeper-system/keykeeper-sealing-public``, readable by any authenticated user),
checks that its key id and fingerprint are the key's own, prints it as a PEM-style
block on stdout and its fingerprint on stderr. ``seal`` encrypts one value to that
key (from the cluster, or fully offline from ``--cert FILE``), bound to one namespace,
name and KeyPolicy (``--policy``, needed for the bare string too: a value sealed for
one policy opens under no other), and prints a complete ApiKey manifest or the bare
sealed string. With
``--expect-fingerprint`` a key other than the pinned one is refused before anything
is sealed.

The value comes from ``--from-file``, from stdin when it is not a terminal, or from a
prompt; ``--value`` works but warns that the shell keeps it in its history. Nothing
here prints the value.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import getpass
import json
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

from keykeeper.api import names
from keykeeper.api.models import API_VERSION
from keykeeper.cli.cluster import CommandError
from keykeeper.crypto.sealed import MAX_SEALED_VALUE, SealingPublicKey, seal
from keykeeper.errors import InvalidName, InvalidValue
from keykeeper.keys.sealing import SEALING_PUBLIC
from keykeeper.shaping import fields as key_fields

PEM_LABEL = "KEYKEEPER SEALING PUBLIC KEY"


def to_pem(key: SealingPublicKey) -> str:
    body = "\n".join(textwrap.wrap(base64.b64encode(key.raw).decode(), 64))
    return f"-----BEGIN {PEM_LABEL}-----\n{body}\n-----END {PEM_LABEL}-----\n"


def from_pem(text: str) -> SealingPublicKey:
    begin, end = f"-----BEGIN {PEM_LABEL}-----", f"-----END {PEM_LABEL}-----"
    if begin not in text or end not in text:
        raise CommandError(f"not a keykeeper sealing public key (no {begin} block)")
    inner = text.split(begin, 1)[1].split(end, 1)[0]
    try:
        return SealingPublicKey(base64.b64decode("".join(inner.split()), validate=True))
    except (binascii.Error, ValueError) as exc:
        raise CommandError(f"the sealing public key is malformed: {exc}") from None


def from_configmap(data: dict[str, str]) -> SealingPublicKey:
    """The key the ConfigMap advertises, only if its key id and fingerprint are its own."""
    try:
        key = SealingPublicKey(base64.b64decode(data["publicKey"], validate=True))
    except (KeyError, binascii.Error, ValueError):
        raise CommandError(f"the ConfigMap {SEALING_PUBLIC} holds no valid public key") from None
    if data.get("keyId") != key.key_id or data.get("fingerprint") != key.fingerprint:
        raise CommandError(f"the ConfigMap {SEALING_PUBLIC} names another key than it holds")
    return key


def pinned(key: SealingPublicKey, expected: str | None) -> SealingPublicKey:
    if expected and expected.removeprefix("sha256:") != key.fingerprint.removeprefix("sha256:"):
        raise CommandError(
            f"the sealing key's fingerprint is {key.fingerprint}, not the expected {expected}; "
            "nothing was sealed"
        )
    return key


def read_fields(specs: list[str]) -> bytes:
    """``--field name=value``, ``name=@file`` or ``name`` (prompted, not echoed), as the
    one plaintext of a key with fields (``shaping.fields``)."""
    made: dict[str, bytes] = {}
    for spec in specs:
        name, given, text = spec.partition("=")
        if name in made:
            raise CommandError(f"--field {name} is given twice")
        if not given:
            made[name] = getpass.getpass(f"field {name} (not echoed): ").encode()
        elif text.startswith("@"):
            made[name] = Path(text[1:]).read_bytes()
        else:
            print(f"warning: --field {name}=... stays in your shell history", file=sys.stderr)
            made[name] = text.encode()
    try:
        value = key_fields.encode(made)
    except InvalidValue as exc:
        raise CommandError(str(exc)) from None
    if len(value) > MAX_SEALED_VALUE:
        raise CommandError(f"the fields are over {MAX_SEALED_VALUE} bytes")
    return value


def read_value(args: argparse.Namespace) -> bytes:
    value: bytes
    if args.field:
        return read_fields(args.field)
    if args.value is not None:
        print(
            "warning: a value given on the command line stays in your shell history; "
            "prefer stdin or --from-file",
            file=sys.stderr,
        )
        value = args.value.encode()
    elif args.from_file is not None:
        value = args.from_file.read_bytes()
    elif not sys.stdin.isatty():
        value = sys.stdin.buffer.read()
    else:
        value = getpass.getpass("value to seal (not echoed): ").encode()
    if args.strip_newline and not args.from_file:
        value = value.rstrip(b"\r\n")
    if not value:
        raise CommandError("the value is empty; nothing was sealed")
    if len(value) > MAX_SEALED_VALUE:
        raise CommandError(f"the value is over {MAX_SEALED_VALUE} bytes")
    return value


def manifest(args: argparse.Namespace, sealed: str) -> dict[str, Any]:
    spec: dict[str, Any] = {"policy": args.policy, "source": {"sealed": sealed}}
    targets = [{"namespace": ns} for ns in args.project or []]
    if targets:
        spec["projections"] = targets
    if args.expires_at:
        spec["expiresAt"] = args.expires_at
    return {
        "apiVersion": API_VERSION,
        "kind": "ApiKey",
        "metadata": {"name": args.name, "namespace": args.namespace},
        "spec": spec,
    }


def render(args: argparse.Namespace, sealed: str) -> str:
    if args.raw:
        return sealed + "\n"
    body = manifest(args, sealed)
    if args.output == "json":
        return json.dumps(body, indent=2) + "\n"
    import yaml

    return str(yaml.safe_dump(body, sort_keys=False, width=4096))


def seal_command(args: argparse.Namespace, fetch: Any) -> str:
    """The output of ``keykeeper seal``; ``fetch()`` reads the cluster's key when needed."""
    try:
        names.namespace(args.namespace)
        names.object_name(args.name)
        for target in args.project or []:
            names.namespace(target)
    except InvalidName as exc:
        raise CommandError(str(exc)) from None
    if not args.policy:
        raise CommandError("--policy is needed: a sealed value opens under that policy only")
    try:
        names.object_name(args.policy)
    except InvalidName as exc:
        raise CommandError(str(exc)) from None
    key = from_pem(args.cert.read_text()) if args.cert else fetch()
    key = pinned(key, args.expect_fingerprint)
    value = read_value(args)
    sealed = seal(
        key, args.namespace, args.name, value, policy=args.policy, sealed_at=int(time.time())
    )
    return render(args, sealed)


def add_arguments(commands: Any) -> None:
    cert = commands.add_parser("cert", help="print the cluster's sealing public key")
    cert.add_argument("--expect-fingerprint", help="refuse any other key (sha256:...)")
    cert.add_argument(
        "--rotate",
        action="store_true",
        help="emergency renewal: ask keykeeper for a new sealing key now, print it",
    )
    _cluster_flags(cert)

    sealer = commands.add_parser("seal", help="seal a value for one ApiKey (safe in git)")
    sealer.add_argument("-n", "--namespace", required=True, help="the ApiKey's namespace")
    sealer.add_argument("--name", required=True, help="the ApiKey's name")
    sealer.add_argument("-P", "--policy", help="the KeyPolicy the value is sealed for (required)")
    sealer.add_argument("--project", action="append", metavar="NS", help="a target namespace")
    sealer.add_argument("-o", "--output", choices=["yaml", "json"], default="yaml")
    sealer.add_argument(
        "--expires-at",
        type=_instant,
        help="when the value stops working at its issuer (RFC 3339): spec.expiresAt",
    )
    sealer.add_argument("--raw", action="store_true", help="print the sealed string only")
    source = sealer.add_mutually_exclusive_group()
    source.add_argument("--from-file", type=_path, help="read the value from this file")
    source.add_argument("--value", help="the value itself (stays in shell history)")
    source.add_argument(
        "--field",
        action="append",
        metavar="NAME[=VALUE|=@FILE]",
        help="a key with fields: one per field (no =VALUE: prompted, not echoed)",
    )
    sealer.add_argument(
        "--keep-newline",
        dest="strip_newline",
        action="store_false",
        help="keep a trailing newline from stdin or a prompt",
    )
    sealer.add_argument("--cert", type=_path, help="seal offline to this public key file")
    sealer.add_argument("--expect-fingerprint", help="refuse any other key (sha256:...)")
    _cluster_flags(sealer)


def _cluster_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kubeconfig", help="the kubeconfig to use (as kubectl's)")
    parser.add_argument("--context", help="the kubeconfig context to use")
    parser.add_argument(
        "--operator-namespace", default="keykeeper-system", help="where keykeeper runs"
    )


def _instant(text: str) -> str:
    from keykeeper.api.timestamps import parse, rfc3339

    try:
        return rfc3339(parse(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an RFC 3339 time: {text!r}") from None


def _path(text: str) -> Any:
    from pathlib import Path

    return Path(text)
