"""What an opted-in workload's restart stamp says, and what a rotation owes it (pure).

A workload names the Secrets whose rotation restarts it, each with its source key
(``<ApiKey namespace>/<ApiKey name>:<Secret name>``, comma-separated, in its
``keykeeper.dev/restart-on-rotation`` annotation). Its pod template's
``keykeeper.dev/restarted-for`` stamp lists ``<secret>=<version>`` for what it was last
rolled out for: a rotation owes it a rollout only for a named Secret whose new version
is not in the stamp yet. ``keykeeper.dev/restart-window`` on the workload says how long
rotations are gathered into one rollout (default 30 s; ``0`` rolls at once).
"""

from __future__ import annotations

from keykeeper.api.durations import parse_duration
from keykeeper.kube.workloads import OPT_IN, RESTARTED_FOR, WINDOW
from keykeeper.types import Body, KeyRef

DEFAULT_WINDOW = 30.0  # seconds
MAX_WINDOW = 600.0  # a window longer than this is this long: a restart is never put off for good
MAX_ENTRIES = 64  # of a stamp read from a workload: whatever its author wrote, bounded


def named_by(workload: Body, source: KeyRef) -> set[str]:
    """The Secrets ``workload`` asks to be restarted for when the ApiKey ``source``
    rotates them (entries ``<namespace>/<apikey>:<secret>``; others name no key)."""
    meta = workload.get("metadata") or {}
    names: set[str] = set()
    for entry in (meta.get("annotations") or {}).get(OPT_IN, "").split(","):
        key, _, secret = entry.strip().partition(":")
        if secret and key == f"{source[0]}/{source[1]}":
            names.add(secret)
    return names


def stamped(workload: Body, kind: str = "deployments") -> dict[str, int]:
    """The versions the workload was last rolled out for (a malformed entry is none): on
    its pod template, or, for an Argo Rollout (restarted by ``spec.restartAt``), on itself."""
    if kind == "rollouts":
        holder = workload.get("metadata") or {}
    else:
        holder = ((workload.get("spec") or {}).get("template") or {}).get("metadata") or {}
    text = (holder.get("annotations") or {}).get(RESTARTED_FOR) or ""
    found: dict[str, int] = {}
    for entry in str(text).split(",")[:MAX_ENTRIES]:
        secret, _, version = entry.strip().partition("=")
        if secret and version.isdigit():
            found[secret] = int(version)
    return found


def stamp(versions: dict[str, int]) -> str:
    return ",".join(f"{secret}={version}" for secret, version in sorted(versions.items()))


def owed(
    workload: Body, rotated: dict[str, int], source: KeyRef, kind: str = "deployments"
) -> dict[str, int]:
    """The Secrets ``source`` rotated that the workload names and was not rolled for."""
    named, done = named_by(workload, source), stamped(workload, kind)
    return {s: v for s, v in rotated.items() if s in named and done.get(s) != v}


def stamp_for(
    workload: Body, rotated: dict[str, int], source: KeyRef, kind: str = "deployments"
) -> str | None:
    """The stamp this workload should carry after ``source`` rotated, or None if it owes
    no rollout (names none of them, or was rolled for them already)."""
    hits = owed(workload, rotated, source, kind)
    return stamp({**stamped(workload, kind), **hits}) if hits else None


def window_of(workload: Body) -> float:
    """Seconds to gather rotations for one rollout: the workload's annotation, bounded;
    the default when absent or not a duration."""
    text = str(((workload.get("metadata") or {}).get("annotations") or {}).get(WINDOW, ""))
    if not text.strip():
        return DEFAULT_WINDOW
    if text.strip() in ("0", "0s"):
        return 0.0
    try:
        return min(parse_duration(text).total_seconds(), MAX_WINDOW)
    except ValueError:
        return DEFAULT_WINDOW
