"""Rollout restarts of the workloads that ask for them when a key rotates.

A Deployment, StatefulSet or DaemonSet opts in on itself, so its owner consents:

    metadata:
      labels:      {keykeeper.dev/restart-on-rotation: "true"}
      annotations: {keykeeper.dev/restart-on-rotation: "stripe-api-key,other-secret"}

When a reconcile writes a new version into a projected Secret of that namespace (the
previous value is still served beside it), each opted-in workload naming that Secret
gets **one** patch of its pod template annotation ``keykeeper.dev/restarted-for``
(``<secret>=<version>,...`` for every named Secret that rotated), which rolls it out as
``kubectl rollout restart`` does. Several targets of one key rotating together restart
a workload once; a workload already stamped for those versions is not touched again.
Each restart is an Event on the ApiKey and an audit record. Workloads are found with
one labelled LIST per kind and namespace, only when a rotation was written.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable

from keykeeper.api.reasons import EventType, Reason
from keykeeper.controllers.apikey.run import Run
from keykeeper.errors import KeykeeperError
from keykeeper.kube.client import Kube
from keykeeper.kube.paths import workloads_path
from keykeeper.types import Body

log = logging.getLogger("keykeeper.restarts")

OPT_IN = "keykeeper.dev/restart-on-rotation"  # the label that selects, the annotation that names
RESTARTED_FOR = "keykeeper.dev/restarted-for"  # on the pod template
KINDS = ("deployments", "statefulsets", "daemonsets")

Rotated = tuple[str, str, int]  # (namespace, Secret name, version now projected)


def stamp_for(workload: Body, rotated: dict[str, int]) -> str | None:
    """The template annotation this workload should carry, or None if it names none of
    the rotated Secrets or already carries it (pure)."""
    meta = workload.get("metadata") or {}
    named = {s.strip() for s in (meta.get("annotations") or {}).get(OPT_IN, "").split(",")}
    hit = {secret: version for secret, version in rotated.items() if secret in named}
    if not hit:
        return None
    stamp = ",".join(f"{secret}={version}" for secret, version in sorted(hit.items()))
    template = ((workload.get("spec") or {}).get("template") or {}).get("metadata") or {}
    return None if (template.get("annotations") or {}).get(RESTARTED_FOR) == stamp else stamp


class Restarter:
    def __init__(self, kube: Kube) -> None:
        self.kube = kube

    async def restart(self, run: Run, rotated: Iterable[Rotated]) -> None:
        by_namespace: dict[str, dict[str, int]] = defaultdict(dict)
        for namespace, secret, version in rotated:
            by_namespace[namespace][secret] = version
        for namespace, secrets in sorted(by_namespace.items()):
            for kind in KINDS:
                try:
                    found = await self.kube.list(
                        workloads_path(namespace, kind), label_selector=OPT_IN
                    )
                except KeykeeperError as exc:
                    log.warning("%s/%s: listing %s in %s: %s", *run.ref, kind, namespace, exc)
                    continue
                for workload in found:
                    stamp = stamp_for(workload, secrets)
                    if stamp is not None:
                        await self._patch(run, namespace, kind, workload, stamp)

    async def _patch(self, run: Run, namespace: str, kind: str, workload: Body, stamp: str) -> None:
        name = workload["metadata"]["name"]
        where = f"{kind}/{name} in {namespace}"
        await run.journal.intend(Reason.ROLLOUT_RESTARTED, f"{where} for {stamp}")
        patch = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_FOR: stamp}}}}}
        try:
            await self.kube.patch(workloads_path(namespace, kind, name), patch)
        except KeykeeperError as exc:  # the rotation stands; the workload restarts by hand
            log.warning("%s/%s: restarting %s: %s", *run.ref, where, exc)
            run.journal.tell(
                EventType.WARNING, Reason.ROLLOUT_RESTARTED, f"could not restart {where}: {exc}"
            )
            return
        run.journal.tell(EventType.NORMAL, Reason.ROLLOUT_RESTARTED, f"restarted {where} ({stamp})")
