"""The ``keykeeper`` command (also installed as the kubectl plugin ``kubectl-keykeeper``).

keykeeper run                       run the operator (settings from flags and env)
keykeeper audit verify LOG...       check an audit log's HMAC chain against its anchor
keykeeper cert                      print the cluster's sealing public key (and fingerprint)
keykeeper seal -n NS --name N       seal a value for one ApiKey: a manifest safe in git
keykeeper status|plan|rotate|suspend|reinstate|revoke [NAME]   day-2 work on ApiKeys
keykeeper completion bash           a bash completion script (also for kubectl keykeeper)

Errors are one line on stderr and a non-zero exit code.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import itertools
import sys
from pathlib import Path
from typing import Any

from keykeeper import __version__
from keykeeper.cli.cluster import CommandError, UserCluster


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "run":
        from keykeeper.runtime.main import run_operator

        return run_operator(args)
    if args.command == "completion":
        sys.stdout.write(_completion(parser))
        return 0
    try:  # the one error path of every command: one line on stderr, exit 1
        return _dispatch(args)
    except (CommandError, OSError) as exc:
        name = f"audit {args.audit_command}" if args.command == "audit" else args.command
        print(f"keykeeper {name}: {exc}", file=sys.stderr)
        return 1


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "audit":
        return _audit_verify(args)
    cluster = UserCluster(args.kubeconfig, args.context)
    if args.command in ("cert", "seal"):
        return _gitops(args, cluster)
    from keykeeper.cli import day2

    sys.stdout.write(day2.run(args, cluster))
    return 0


def _gitops(args: argparse.Namespace, cluster: UserCluster) -> int:
    from keykeeper.cli import seal as gitops
    from keykeeper.keys import sealing

    def fetch() -> object:
        found = cluster.configmap(args.operator_namespace, sealing.SEALING_PUBLIC)
        return gitops.from_configmap(found)

    if args.command == "cert" and args.rotate:
        key = _renewed(cluster, args.operator_namespace, fetch())
        sys.stdout.write(gitops.to_pem(key))
        print(f"renewed; fingerprint: {key.fingerprint}", file=sys.stderr)
    elif args.command == "cert":
        key = gitops.pinned(fetch(), args.expect_fingerprint)  # type: ignore[arg-type]
        sys.stdout.write(gitops.to_pem(key))
        print(f"fingerprint: {key.fingerprint}", file=sys.stderr)
    else:
        sys.stdout.write(gitops.seal_command(args, fetch))
    return 0


def _parser() -> argparse.ArgumentParser:
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
    run.add_argument(
        "--http-address",
        help="host:port serving /healthz, /readyz and /metrics (env KEYKEEPER_HTTP_ADDRESS; "
        'default ":8080"; "" serves nothing)',
    )
    run.add_argument(
        "--leader-elect",
        action="store_true",
        default=None,
        help="run as one of several replicas: only the holder of the Lease "
        "<namespace>/keykeeper-leader writes (env KEYKEEPER_LEADER_ELECTION)",
    )
    run.add_argument(
        "--passphrase-file",
        type=Path,
        help="derive the master key from this passphrase (env KEYKEEPER_PASSPHRASE_FILE)",
    )
    run.add_argument("--verbose", action="store_true")

    _add_audit(commands)
    from keykeeper.cli import day2
    from keykeeper.cli import seal as gitops

    gitops.add_arguments(commands)
    day2.add_arguments(commands)
    completion = commands.add_parser("completion", help="print a shell completion script")
    completion.add_argument("shell", choices=["bash"])
    return parser


def _renewed(cluster: UserCluster, namespace: str, before: Any) -> Any:
    """Ask the operator for a new sealing key (an annotation on the public ConfigMap) and
    wait until it is published."""
    import time
    from datetime import UTC, datetime

    from keykeeper.api.timestamps import rfc3339_micro
    from keykeeper.cli import seal as gitops
    from keykeeper.keys import sealing

    now = rfc3339_micro(datetime.now(UTC))
    cluster.annotate_configmap(namespace, sealing.SEALING_PUBLIC, {sealing.RENEW_REQUESTED: now})
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline:
        key = gitops.from_configmap(cluster.configmap(namespace, sealing.SEALING_PUBLIC))
        if key != before:
            return key
        time.sleep(1.0)
    raise CommandError("no new sealing key after 150 s: is keykeeper running?")


def _add_audit(commands: Any) -> None:
    audit = commands.add_parser("audit", help="audit log tools")
    audit_commands = audit.add_subparsers(dest="audit_command", required=True)
    verify = audit_commands.add_parser("verify", help="check an audit log's HMAC chain")
    verify.add_argument(
        "log",
        type=Path,
        nargs="+",
        help="the log; with closed segments, those first then the open file "
        "(audit.jsonl.0* audit.jsonl)",
    )
    source = verify.add_mutually_exclusive_group()
    source.add_argument(
        "--audit-key-file",
        type=Path,
        help="a file holding the base64 audit key (keykeeper audit key): no master key needed",
    )
    _key_source(source, verify)
    anchor = verify.add_mutually_exclusive_group()
    anchor.add_argument(
        "--anchor-file",
        type=Path,
        help="the anchor Secret as JSON (default: read it from the cluster)",
    )
    anchor.add_argument(
        "--no-anchor",
        action="store_true",
        help="check the chain only (a truncated or emptied log then goes unnoticed)",
    )
    exporter = audit_commands.add_parser(
        "key",
        help="print the audit key (base64): it verifies, and could forge, the log and its "
        "anchor, but opens no value; hand it to auditors instead of the master key",
    )
    _key_source(exporter.add_mutually_exclusive_group(), exporter)
    for command in (verify, exporter):
        command.add_argument("--namespace", default="keykeeper-system")
        command.add_argument("--kubeconfig", help="the kubeconfig to use (as kubectl's)")
        command.add_argument("--context", help="the kubeconfig context to use")
        command.add_argument("--secret", default="keykeeper-master-key")


def _key_source(group: Any, command: argparse.ArgumentParser) -> None:
    group.add_argument(
        "--master-key-file",
        type=Path,
        help="a file holding the base64 master key (default: read it from the cluster)",
    )
    group.add_argument(
        "--passphrase-file",
        type=Path,
        help="the operator runs in passphrase mode: derive the key from this passphrase "
        "(the KDF parameters are read from the cluster, or given with --kdf)",
    )
    command.add_argument("--kdf", help="the KDF string (argon2id$... or pbkdf2-sha256$...)")


def _completion(parser: argparse.ArgumentParser) -> str:
    """Bash completion of the commands and their flags, for keykeeper and kubectl-keykeeper."""
    actions = parser._subparsers._group_actions[0]  # type: ignore[union-attr]
    choices: dict[str, argparse.ArgumentParser] = dict(actions.choices or {})
    cases = "".join(
        f'    {name}) opts="{" ".join(o for a in sub._actions for o in a.option_strings)}";;\n'
        for name, sub in sorted(choices.items())
    )
    return (
        "_keykeeper() {\n"
        '  local cur="${COMP_WORDS[COMP_CWORD]}" cmd="${COMP_WORDS[1]}" opts\n'
        f'  if [ "$COMP_CWORD" -eq 1 ]; then opts="{" ".join(sorted(choices))}"; else\n'
        f'  case "$cmd" in\n{cases}  esac; fi\n'
        '  COMPREPLY=($(compgen -W "$opts" -- "$cur"))\n'
        "}\n"
        "complete -F _keykeeper keykeeper kubectl-keykeeper\n"
    )


def _audit_verify(args: argparse.Namespace) -> int:

    try:
        return _verify(args, UserCluster(args.kubeconfig, args.context))
    except (ValueError, KeyError) as exc:  # a malformed key, anchor or log
        raise CommandError(f"{type(exc).__name__}: {exc}") from None


def _audit_key(args: argparse.Namespace, cluster: UserCluster) -> bytes:
    """The audit MAC key: given alone, or derived from the master key (a file, a
    passphrase, or the cluster's Secret)."""
    from keykeeper.crypto.kdf import MasterKey, PassphraseKdf, Purpose, derive_master_key

    if getattr(args, "audit_key_file", None):
        key = base64.b64decode(args.audit_key_file.read_text().strip(), validate=True)
        if len(key) != 32:
            raise CommandError("the audit key file holds no 32-byte key (base64)")
        return key
    if args.master_key_file:
        master = MasterKey(base64.b64decode(args.master_key_file.read_text().strip()))
    elif args.passphrase_file:
        kdf = args.kdf or cluster.secret_data(args.namespace, args.secret).get("kdf", b"").decode()
        master = derive_master_key(
            args.passphrase_file.read_text().strip(), PassphraseKdf.decode(kdf)
        )
    else:
        master = MasterKey(cluster.secret_data(args.namespace, args.secret)["master-key"])
    return master.subkey(Purpose.AUDIT_MAC)


def _verify(args: argparse.Namespace, cluster: UserCluster) -> int:
    import json

    from keykeeper.audit import anchor
    from keykeeper.audit.chain import verify

    key = _audit_key(args, cluster)
    if args.audit_command == "key":
        print(base64.b64encode(key).decode())
        return 0
    found = None
    if args.anchor_file:
        found = anchor.parse(json.loads(args.anchor_file.read_text()))
    elif not args.no_anchor:
        found = anchor.parse(cluster.secret(args.namespace, anchor.ANCHOR_SECRET))
        if found is None:
            print("note: no anchor in the cluster; checking the chain only", file=sys.stderr)
    if found is not None:
        print(anchor.describe(found), file=sys.stderr)
    with contextlib.ExitStack() as files:
        handles = [files.enter_context(path.open("rb")) for path in args.log]
        verdict = verify(itertools.chain.from_iterable(handles), key, found)
    print(verdict)
    return 0 if verdict.ok else 1


if __name__ == "__main__":
    sys.exit(main())
