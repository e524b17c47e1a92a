"""The day-2 commands: ``status``, ``plan``, ``rotate``, ``suspend``, ``reinstate`` and
``revoke``, as a user types them (``kubectl keykeeper status -A``).

They speak with the user's own identity (``--kubeconfig``, ``--context``; the
namespace from ``-n`` or the context), so RBAC decides what each person may see and
do. ``plan`` answers "where would this key be projected, and why not elsewhere?" with
the operator's own pure authorization function (``authz.plan``) over the live policy
and namespaces: no writes. Every failure is one line on stderr and exit code 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from keykeeper.api.models import Phase, parse_apikey_spec, parse_policy_spec
from keykeeper.api.timestamps import rfc3339
from keykeeper.cli.cluster import GROUP, VERSION, CommandError, UserCluster
from keykeeper.core import authz
from keykeeper.errors import SpecError
from keykeeper.types import Body

ACTIONS = ("status", "plan", "rotate", "suspend", "reinstate", "revoke")


def run(args: argparse.Namespace, cluster: UserCluster) -> str:
    namespace = args.namespace or cluster.default_namespace
    if args.command == "status":
        return status(cluster, None if args.all_namespaces else namespace, args.name, args.output)
    if args.command == "plan":
        return plan(cluster, namespace, args.name, args.filename, args.operator_namespace)
    if not args.name:
        raise CommandError(f"{args.command} needs the ApiKey's name")
    cluster.apikey(namespace, args.name)  # not found: one line, nothing written
    if args.command == "rotate":
        now = rfc3339(datetime.now(UTC))
        annotations = {"keykeeper.dev/rotate-requested-at": now}
        cluster.patch(namespace, args.name, {"metadata": {"annotations": annotations}})
        return f"apikey {namespace}/{args.name}: rotation requested at {now}\n"
    if args.command in ("suspend", "reinstate"):
        suspended = args.command == "suspend"
        cluster.patch(namespace, args.name, {"spec": {"suspended": suspended}})
        return f"apikey {namespace}/{args.name}: {'suspended' if suspended else 'reinstated'}\n"
    if not args.yes and not _confirm(f"revoke {namespace}/{args.name}? This cannot be undone"):
        raise CommandError("not revoked (answer 'yes', or pass --yes)")
    cluster.patch(namespace, args.name, {"spec": {"revoked": True}})
    return f"apikey {namespace}/{args.name}: revoked; every projection is withdrawn\n"


def _confirm(question: str) -> bool:
    print(f"{question} [yes/no]: ", end="", file=sys.stderr, flush=True)
    return sys.stdin.readline().strip().lower() == "yes"


def status(cluster: UserCluster, namespace: str | None, name: str | None, output: str) -> str:
    keys = [cluster.apikey(namespace or "default", name)] if name else cluster.apikeys(namespace)
    if output in ("json", "yaml"):
        shown = keys[0] if name else {"items": keys}
        return _dump(shown, output)
    if name:
        return _detail(cluster, keys[0])
    rows = [
        ("NAMESPACE", "NAME", "PHASE", "VERSION", "NEXT ROTATION", "EXPIRES", "PROJECTED", "DENIED")
    ]
    for key in sorted(keys, key=lambda k: (k["metadata"]["namespace"], k["metadata"]["name"])):
        st, targets = key.get("status") or {}, (key.get("status") or {}).get("targets") or {}
        rows.append(
            (
                key["metadata"]["namespace"],
                key["metadata"]["name"],
                str(st.get("phase", "")),
                str(st.get("currentVersion", "")),
                str(st.get("nextRotationAt") or "-"),
                _expires(key),
                str(targets.get("projected", 0)),
                str(targets.get("denied", 0)),
            )
        )
    return _table(rows)


def _expires(key: dict[str, Any]) -> str:
    """The value's expiry (as the operator read it: the spec's, or the source Secret's
    annotation), and whether it is near or past (its conditions say)."""
    status = key.get("status") or {}
    at = status.get("valueExpiresAt") or (key.get("spec") or {}).get("expiresAt")
    if not at:
        return "-"
    states = {c.get("type"): c for c in (key.get("status") or {}).get("conditions") or []}
    if (states.get("Expired") or {}).get("status") == "True":
        return f"{at} (expired)"
    return f"{at} (soon)" if (states.get("Expiring") or {}).get("status") == "True" else str(at)


def _detail(cluster: UserCluster, key: dict[str, Any]) -> str:
    meta, st = key["metadata"], key.get("status") or {}
    lines = [f"ApiKey {meta['namespace']}/{meta['name']}: phase {st.get('phase', '?')}, "
             f"version {st.get('currentVersion', '-')}, next rotation "
             f"{st.get('nextRotationAt', '-')}"]  # fmt: skip
    for cond in st.get("conditions") or []:
        lines.append(f"  {cond['type']}={cond['status']} {cond['reason']}: {cond['message']}")
    rows = [("  TARGET", "SECRET", "STATE", "REASON")]
    for p in st.get("projections") or []:
        rows.append((f"  {p.get('namespace')}", str(p.get("secretName")), str(p.get("state")),
                     str(p.get("reason", ""))))  # fmt: skip
    events = cluster.call(
        "Events",
        cluster.core.list_namespaced_event,
        meta["namespace"],
        field_selector=f"involvedObject.name={meta['name']},involvedObject.kind=ApiKey",
    )
    recent = sorted(events.items, key=lambda e: str(e.last_timestamp or e.event_time or ""))
    tail = [f"  {e.type} {e.reason}: {e.message}" for e in recent[-10:]]
    return "\n".join([*lines, _table(rows).rstrip("\n"), "Recent Events:", *tail]) + "\n"


def plan(
    cluster: UserCluster,
    namespace: str,
    name: str | None,
    filename: Path | None,
    operator_namespace: str = "keykeeper-system",
) -> str:
    """Each requested target and whether the live policy and namespaces allow it, and why
    (the operator's own namespace is never a source or a target, wherever it runs)."""
    if filename is not None:
        import yaml

        try:
            body = yaml.safe_load(filename.read_text())
            namespace = body["metadata"].get("namespace", namespace)
            name = body["metadata"]["name"]
        except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError) as exc:
            raise CommandError(f"{filename}: not an ApiKey manifest ({exc})") from None
    elif name:
        body = cluster.apikey(namespace, name)
    else:
        raise CommandError("plan needs an ApiKey's name or -f MANIFEST")
    try:
        spec = parse_apikey_spec(body.get("spec"))
    except SpecError as exc:
        raise CommandError(f"invalid ApiKey: {exc}") from None
    policy_body = cluster.call(
        f"KeyPolicy {spec.policy}",
        cluster.custom.get_cluster_custom_object,
        GROUP,
        VERSION,
        "keypolicies",
        spec.policy,
    )
    policy = parse_policy_spec(policy_body.get("spec"))
    namespaces = _namespaces(cluster)
    own = namespaces.get(namespace, authz.NamespaceInfo(namespace))
    context = authz.KeyContext(own, Phase.ACTIVE, frozenset({operator_namespace}))
    rows = [("TARGET", "SECRET", "DECISION", "TYPE", "DATA-KEYS", "REASON")]
    if not authz.admits_source(context, policy):
        return f"KeyPolicy {spec.policy} does not admit keys from namespace {namespace}\n"
    for target, decision in authz.plan(
        context, spec, str(name), policy, namespaces, stored_fields(body)
    ):
        verdict = "allowed" if decision.allowed else "denied"
        keys, problem = target.shape.preview(target.key)
        reason = f"{decision.message}; {problem}" if problem else decision.message
        if problem and decision.allowed:
            verdict = "refused"
        shown = ",".join(keys)
        kind = str(target.shape.secret_type)
        rows.append((target.namespace, target.secret_name, verdict, kind, shown, reason))
    return _table(rows)


def _namespaces(cluster: UserCluster) -> dict[str, authz.NamespaceInfo]:
    return {
        ns.metadata.name: authz.NamespaceInfo(
            ns.metadata.name,
            dict(ns.metadata.labels or {}),
            terminating=bool(ns.metadata.deletion_timestamp),
            accepts=authz.accepted_sources(ns.metadata.annotations or {}),
        )
        for ns in cluster.call("list namespaces", cluster.core.list_namespace).items
    }


def stored_fields(body: Body) -> tuple[str, ...] | None:
    """The field names of the key's current version, as its status lists them (a sealed
    value's fields are known only once it is opened); None: as the spec declares them."""
    status = body.get("status") or {}
    for version in status.get("versions") or []:
        if version.get("state") == "Current" and version.get("fields"):
            return tuple(str(f) for f in version["fields"])
    return None


def _table(rows: Sequence[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "".join(
        "   ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        + "\n"
        for row in rows
    )


def _dump(body: Any, output: str) -> str:
    if output == "json":
        return json.dumps(body, indent=2) + "\n"
    import yaml

    return str(yaml.safe_dump(body, sort_keys=False))


def add_arguments(commands: Any) -> None:
    helps = {
        "status": "a table of keys, or one key with its projections and recent Events",
        "plan": "where a key (or a manifest not yet applied) would be projected, and why not",
        "rotate": "request a rotation now",
        "suspend": "withdraw every projection, keep the material",
        "reinstate": "undo a suspension",
        "revoke": "withdraw every projection for good and erase the material (asks first)",
    }
    for action in ACTIONS:
        sub = commands.add_parser(action, help=helps[action])
        sub.add_argument("name", nargs="?", help="the ApiKey's name")
        sub.add_argument("-n", "--namespace", help="the ApiKey's namespace (default: context)")
        sub.add_argument("--kubeconfig", help="the kubeconfig to use (as kubectl's)")
        sub.add_argument("--context", help="the kubeconfig context to use")
        if action == "status":
            sub.add_argument("-A", "--all-namespaces", action="store_true")
            sub.add_argument("-o", "--output", choices=["table", "json", "yaml"], default="table")
        if action == "plan":
            sub.add_argument("-f", "--filename", type=Path, help="an ApiKey manifest")
            sub.add_argument(
                "--operator-namespace",
                default="keykeeper-system",
                help="where keykeeper runs (never a source or a target)",
            )
        if action == "revoke":
            sub.add_argument("--yes", action="store_true", help="do not ask")
