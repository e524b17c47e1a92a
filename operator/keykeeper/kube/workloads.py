"""The opted-in workloads, kept by a lean watch: namespace -> the workloads there that
ask to be restarted on rotation (K19).

Finding restarts by LIST cost 3 LISTs per target namespace of every rotation written,
whether or not any workload there opted in (192 for a key with 64 targets), in the
key's worker. A label-selected watch per kind (``keykeeper.dev/restart-on-rotation``)
keeps, per workload, only what a restart decides on: its name, the opt-in annotation
and the stamp its pod template carries. Until every kind has been listed, and while a
watch is broken, the index is not ``synced`` and restarts fall back to the LIST (a
restart is never skipped because the index is behind). kopf is not used for these: they
are not keykeeper's resources, and each event needs no handler, only an update here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from typing import Any

from keykeeper.errors import KeykeeperError, NotFound
from keykeeper.kube.client import Kube
from keykeeper.kube.paths import WORKLOAD_GROUPS
from keykeeper.types import Body

log = logging.getLogger("keykeeper.workloads")

OPT_IN = "keykeeper.dev/restart-on-rotation"  # the label that selects, the annotation that names
RESTARTED_FOR = "keykeeper.dev/restarted-for"  # on the pod template
WINDOW = "keykeeper.dev/restart-window"  # on the workload: rotations gathered into one rollout
KINDS = {"deployments": "Deployment", "statefulsets": "StatefulSet", "daemonsets": "DaemonSet"}
ROLLOUTS = {"rollouts": "Rollout"}  # Argo Rollouts: KEYKEEPER_ARGO_ROLLOUTS=true
RETRY = 2.0  # seconds before listing again after a broken watch
ABSENT_RETRY = 30.0  # seconds before looking again for a kind the cluster does not serve


def kinds_for(argo_rollouts: bool) -> dict[str, str]:
    return {**KINDS, **(ROLLOUTS if argo_rollouts else {})}


def compact(workload: Body) -> Body:
    """What a restart decides on; the rest of a workload is not kept."""
    meta = workload.get("metadata") or {}
    template = ((workload.get("spec") or {}).get("template") or {}).get("metadata") or {}
    stamp = (template.get("annotations") or {}).get(RESTARTED_FOR)
    on_itself = (meta.get("annotations") or {}).get(RESTARTED_FOR)  # a Rollout's stamp
    kept: Body = {
        "metadata": {
            "name": meta.get("name", ""),
            "namespace": meta.get("namespace", ""),
            "uid": meta.get("uid", ""),  # the Event on it names it exactly
            "resourceVersion": meta.get("resourceVersion", ""),
            "annotations": {
                OPT_IN: (meta.get("annotations") or {}).get(OPT_IN, ""),
                WINDOW: str((meta.get("annotations") or {}).get(WINDOW, ""))[:32],
                **({RESTARTED_FOR: on_itself} if on_itself is not None else {}),
            },
        }
    }
    if stamp is not None:
        kept["spec"] = {"template": {"metadata": {"annotations": {RESTARTED_FOR: stamp}}}}
    return kept


class WorkloadIndex:
    def __init__(self, kinds: dict[str, str] | None = None) -> None:
        self.kinds = dict(kinds or KINDS)
        # (namespace, kind) -> name -> compact workload
        self._by_place: dict[tuple[str, str], dict[str, Body]] = defaultdict(dict)
        self._synced: set[str] = set()  # kinds listed, and watched since without a break

    @property
    def synced(self) -> bool:
        return self._synced == set(self.kinds)

    def workloads(self, namespace: str, kind: str) -> list[Body]:
        return list(self._by_place.get((namespace, kind), {}).values())

    def put(self, kind: str, workload: Body) -> None:
        kept = compact(workload)
        meta = kept["metadata"]
        self._by_place[(meta["namespace"], kind)][meta["name"]] = kept

    def drop(self, kind: str, workload: Body) -> None:
        meta = workload.get("metadata") or {}
        place = (str(meta.get("namespace", "")), kind)
        self._by_place.get(place, {}).pop(str(meta.get("name", "")), None)
        if place in self._by_place and not self._by_place[place]:
            del self._by_place[place]

    def _replace(self, kind: str, items: list[Body]) -> None:
        for place in [p for p in self._by_place if p[1] == kind]:
            del self._by_place[place]
        for item in items:
            self.put(kind, item)

    async def run(self, kube: Kube) -> None:
        """Keep every kind's share of the index, each by a list then a watch."""
        await asyncio.gather(*(self._keep(kube, kind) for kind in self.kinds))

    async def _keep(self, kube: Kube, kind: str) -> None:
        path = f"/apis/{WORKLOAD_GROUPS[kind]}/{kind}"
        while True:
            try:
                answer = await kube.call("GET", path, query={"labelSelector": OPT_IN})
                self._replace(kind, answer.get("items") or [])
                version = str((answer.get("metadata") or {}).get("resourceVersion", ""))
                self._synced.add(kind)
                await self._watch(kube, kind, path, version)
            except NotFound:  # not served (Argo Rollouts not installed): none opt in
                self._replace(kind, [])
                self._synced.add(kind)
                await asyncio.sleep(ABSENT_RETRY)
                continue
            except KeykeeperError as exc:
                log.info("watching opted-in %s: %s; listing again", kind, exc)
            self._synced.discard(kind)
            await asyncio.sleep(RETRY)

    async def _watch(self, kube: Kube, kind: str, path: str, version: str) -> None:
        """Follow the watch from ``version`` until it breaks or is expired (410)."""
        query = {"labelSelector": OPT_IN, "allowWatchBookmarks": "true"}
        while True:  # each watch request ends after a few minutes: the next goes on
            events = kube.watch(path, {**query, "resourceVersion": version})
            async with contextlib.aclosing(events):
                async for event in events:
                    kind_of, item = event.get("type"), event.get("object") or {}
                    if kind_of == "ERROR":
                        return  # expired (410): list again
                    version = str((item.get("metadata") or {}).get("resourceVersion", version))
                    self._apply(kind, str(kind_of), item)

    def _apply(self, kind: str, event: str, item: dict[str, Any]) -> None:
        if event in ("ADDED", "MODIFIED"):
            self.put(kind, item)
        elif event == "DELETED":
            self.drop(kind, item)
