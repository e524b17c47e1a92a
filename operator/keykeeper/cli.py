"""The ``keykeeper`` command (also installed as the kubectl plugin ``kubectl-keykeeper``).

keykeeper run                       run the operator (settings from flags and env)
keykeeper audit verify LOG          check an audit log's HMAC chain
"""

from __future__ import annotations

import argparse
import base64
import sys
from pathlib import Path

from keykeeper import __version__


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="keykeeper", description="keykeeper: API keys, kept safe in Kubernetes."
    )
    parser.add_argument("--version", action="version", version=f"keykeeper {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the operator")
    run.add_argument("--namespace", help="the operator's namespace (env KEYKEEPER_NAMESPACE)")
    run.add_argument("--audit-log", type=Path, help="audit log path (env KEYKEEPER_AUDIT_LOG)")
    run.add_argument(
        "--log-format",
        choices=["json", "plain", "full"],
        help="log format (env KEYKEEPER_LOG_FORMAT, default json)",
    )
    run.add_argument("--liveness", help="kopf liveness endpoint (env KEYKEEPER_LIVENESS)")
    run.add_argument(
        "--passphrase-file",
        type=Path,
        help="derive the master key from this passphrase (env KEYKEEPER_PASSPHRASE_FILE)",
    )
    run.add_argument("--verbose", action="store_true")

    audit = commands.add_parser("audit", help="audit log tools")
    audit_commands = audit.add_subparsers(dest="audit_command", required=True)
    verify = audit_commands.add_parser("verify", help="check an audit log's HMAC chain")
    verify.add_argument("log", type=Path)
    source = verify.add_mutually_exclusive_group()
    source.add_argument(
        "--master-key-file",
        type=Path,
        help="a file holding the base64 master key (default: read it from the cluster)",
    )
    verify.add_argument("--namespace", default="keykeeper-system")
    verify.add_argument("--secret", default="keykeeper-master-key")

    args = parser.parse_args(argv)
    if args.command == "run":
        from keykeeper.main import run_operator

        return run_operator(args)
    if args.command == "audit" and args.audit_command == "verify":
        return _audit_verify(args)
    parser.error("unknown command")
    return 2


def _audit_verify(args: argparse.Namespace) -> int:
    from keykeeper.audit import verify
    from keykeeper.crypto.kdf import MasterKey, Purpose

    if args.master_key_file:
        raw = base64.b64decode(args.master_key_file.read_text().strip())
    else:
        from kubernetes import client

        from keykeeper.kube import load_client

        secret = client.CoreV1Api(load_client()).read_namespaced_secret(args.secret, args.namespace)
        raw = base64.b64decode((secret.data or {})["master-key"])
    key = MasterKey(raw).subkey(Purpose.AUDIT_MAC)
    with args.log.open("rb") as handle:
        verdict = verify(handle, key)
    print(verdict)
    return 0 if verdict.ok else 1


if __name__ == "__main__":
    sys.exit(main())
