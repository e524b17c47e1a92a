"""Rollout restarts of the workloads that ask for them when a key rotates.

A Deployment, StatefulSet or DaemonSet opts in on itself, so its owner consents, and
names the source key of each Secret, so no other key writing that name restarts it:

    metadata:
      labels:      {keykeeper.dev/restart-on-rotation: "true"}
      annotations: {keykeeper.dev/restart-on-rotation: "payments/stripe:stripe-api-key"}

(``<ApiKey namespace>/<ApiKey name>:<Secret name>``, comma-separated; a bare Secret
name, the pre-0.5 form, restarts nothing.) When a reconcile writes a new version into a
projected Secret of that namespace (the previous value is still served beside it), each
opted-in workload naming that key and Secret gets **one** patch of its pod template
annotation ``keykeeper.dev/restarted-for`` (``<secret>=<version>,...``), which rolls it
out as ``kubectl rollout restart`` does. Several targets of one key rotating together
restart a workload once; a workload already stamped for those versions is not touched
again. Each restart is an Event on the workload, in its namespace, and an audit record;
the ApiKey's Event only counts them (a source tenant learns no workload names).
Workloads are found in the index a lean watch keeps (``kube.workloads``: no request
per rotation), or, while that index is not in step, with one labelled LIST per kind and
namespace.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Iterable
from enum import StrEnum

from keykeeper.api.reasons import EventType, Reason
from keykeeper.audit.events import EventSink
from keykeeper.controllers.apikey.run import Run
from keykeeper.errors import KeykeeperError, NotFound
from keykeeper.kube.client import Kube
from keykeeper.kube.paths import workloads_path
from keykeeper.kube.workloads import KINDS, OPT_IN, RESTARTED_FOR, WorkloadIndex
from keykeeper.types import Body, KeyRef

log = logging.getLogger("keykeeper.restarts")


class Restart(StrEnum):
    """What became of one workload's restart (``keykeeper_restarts_total{result}``)."""

    RESTARTED = "restarted"
    FAILED = "failed"
    GONE = "gone"  # deleted between being found and being patched


Rotated = tuple[str, str, int]  # (namespace, Secret name, version now projected)


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


def stamp_for(workload: Body, rotated: dict[str, int], source: KeyRef) -> str | None:
    """The template annotation this workload should carry, or None if it names none of
    the Secrets ``source`` rotated, or already carries it (pure)."""
    named = named_by(workload, source)
    hit = {secret: version for secret, version in rotated.items() if secret in named}
    if not hit:
        return None
    stamp = ",".join(f"{secret}={version}" for secret, version in sorted(hit.items()))
    template = ((workload.get("spec") or {}).get("template") or {}).get("metadata") or {}
    return None if (template.get("annotations") or {}).get(RESTARTED_FOR) == stamp else stamp


class Restarter:
    def __init__(self, kube: Kube, sink: EventSink, index: WorkloadIndex | None = None) -> None:
        self.kube, self.sink, self.index = kube, sink, index
        self.results: Counter[str] = Counter()  # keykeeper_restarts_total{result}

    async def opted_in(self, namespace: str, kind: str) -> list[Body]:
        """The workloads of ``kind`` in ``namespace`` that opt in: from the index when it
        is in step with the cluster, else listed."""
        if self.index is not None and self.index.synced:
            return self.index.workloads(namespace, kind)
        return await self.kube.list(workloads_path(namespace, kind), label_selector=OPT_IN)

    async def restart(self, run: Run, rotated: Iterable[Rotated]) -> None:
        by_namespace: dict[str, dict[str, int]] = defaultdict(dict)
        for namespace, secret, version in rotated:
            by_namespace[namespace][secret] = version
        outcomes: Counter[Restart] = Counter()
        for namespace, secrets in sorted(by_namespace.items()):
            for kind in KINDS:
                try:
                    found = await self.opted_in(namespace, kind)
                except KeykeeperError as exc:
                    log.warning("%s/%s: listing %s in %s: %s", *run.ref, kind, namespace, exc)
                    continue
                for workload in found:
                    stamp = stamp_for(workload, secrets, run.ref)
                    if stamp is not None:
                        outcomes[await self._patch(run, namespace, kind, workload, stamp)] += 1
        self.results.update(outcomes)
        done, failed = outcomes[Restart.RESTARTED], outcomes[Restart.FAILED]
        if done or failed:  # counted on the ApiKey: the workloads are told in their own
            run.journal.tell(
                EventType.WARNING if failed else EventType.NORMAL,
                Reason.ROLLOUT_RESTARTED,
                f"restarted {done} opted-in workload(s)"
                + (f"; {failed} could not be restarted" if failed else ""),
            )

    async def _patch(
        self, run: Run, namespace: str, kind: str, workload: Body, stamp: str
    ) -> Restart:
        name = workload["metadata"]["name"]
        where = f"{kind}/{name} in {namespace}"
        await run.journal.intend(Reason.ROLLOUT_RESTARTED, f"{where} for {stamp}")
        patch = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_FOR: stamp}}}}}
        source = f"ApiKey {run.ref[0]}/{run.ref[1]}"
        target = {"apiVersion": "apps/v1", "kind": KINDS[kind], "metadata": workload["metadata"]}
        try:
            await self.kube.patch(workloads_path(namespace, kind, name), patch)
        except NotFound:  # deleted since it was seen: nothing to restart, nothing wrong
            log.info("%s/%s: %s is gone; not restarted", *run.ref, where)
            return Restart.GONE
        except KeykeeperError as exc:  # the rotation stands; the workload restarts by hand
            log.warning("%s/%s: restarting %s: %s", *run.ref, where, exc)
            failure = f"{source} rotated {stamp}, but the restart failed: {exc}"
            await self.sink.emit(target, EventType.WARNING, Reason.ROLLOUT_RESTARTED, failure)
            return Restart.FAILED
        told = f"restarted: {source} rotated {stamp}"
        await self.sink.emit(target, EventType.NORMAL, Reason.ROLLOUT_RESTARTED, told)
        return Restart.RESTARTED
