"""An in-memory API server behind the one-method ``Kube.call`` seam (as httpx's MockTransport).

It keeps objects by path, and does what the orchestration relies on the real apiserver
for: uids and resourceVersions, 404 / 409 (AlreadyExists, resourceVersion and uid
preconditions) / 422 (an immutable Secret's data), merge patches and the status
subresource, finalizers (a delete only marks the object), label-selected lists, and a
log of every request. It is for unit tests of orchestration only; the cluster tests
run against the real kube-apiserver.
"""

from __future__ import annotations

import copy
import itertools
import json
import uuid
from collections.abc import AsyncGenerator, Callable
from typing import Any

from keykeeper.errors import ApiError, ApiUnavailable, Conflict, NotFound
from keykeeper.kube.client import Kube
from keykeeper.types import Body

Request = tuple[str, str]  # (method, path)


def _merge(target: Body, patch: Body) -> Body:
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)
    return target


class FakeKube(Kube):
    def __init__(self) -> None:  # no connection: everything is in memory
        self.objects: dict[str, Body] = {}
        self.requests: list[Request] = []
        self._versions = itertools.count(1)
        self.fail: Callable[[str, str], Exception | None] = lambda method, path: None
        self.write_guard = None

    async def close(self) -> None:  # nothing to close
        return None

    async def watch(
        self, path: str, query: dict[str, str], seconds: int = 240
    ) -> AsyncGenerator[Body, None]:
        """No watches in memory: a watcher falls back to polling."""
        raise ApiUnavailable(f"WATCH {path}: the in-memory API has no watches")
        yield {}  # an async generator

    # -- the seam ------------------------------------------------------------------------

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> Body:
        self.requests.append((method, path))
        injected = self.fail(method, path)
        if injected is not None:
            raise injected
        body = copy.deepcopy(body)
        if method == "GET":
            return self._get(path, (query or {}).get("labelSelector", ""))
        if method == "POST":
            return self._create(path, body)
        if method == "PUT":
            return self._replace(path, body)
        if method == "PATCH":
            return self._patch(path, body)
        if method == "DELETE":
            return self._delete(path, body)
        raise ApiError(f"{method} {path}: 405")

    # -- verbs ---------------------------------------------------------------------------

    def _get(self, path: str, selector: str) -> Body:
        if path in self.objects:
            return copy.deepcopy(self.objects[path])
        prefix = path.rstrip("/") + "/"
        items = [
            copy.deepcopy(o)
            for p, o in self.objects.items()
            if (p.startswith(prefix) and "/" not in p[len(prefix) :]) or _cluster_list(path, p)
        ]
        if not items and not _is_collection(path):
            raise NotFound(f"GET {path}: 404")
        wanted = dict(part.split("=", 1) for part in selector.split(",") if "=" in part)
        items = [o for o in items if _labels_match(o, wanted)]
        return {"items": items}

    def _create(self, collection: str, body: Body) -> Body:
        meta = body.setdefault("metadata", {})
        path = f"{collection}/{meta['name']}"
        if path in self.objects:
            raise Conflict(f"POST {collection}: 409 AlreadyExists")
        if "/namespaces/" in collection:
            meta["namespace"] = collection.split("/namespaces/")[1].split("/")[0]
        meta.update(uid=str(uuid.uuid4()), resourceVersion=str(next(self._versions)))
        meta.setdefault("generation", 1)
        self.objects[path] = body
        return copy.deepcopy(body)

    def _existing(self, path: str, method: str) -> Body:
        if path not in self.objects:
            raise NotFound(f"{method} {path}: 404")
        return self.objects[path]

    def _check_version(self, method: str, path: str, current: Body, wanted: str | None) -> None:
        if wanted is not None and wanted != current["metadata"]["resourceVersion"]:
            raise Conflict(f"{method} {path}: 409 the object has been modified")

    def _replace(self, path: str, body: Body) -> Body:
        current = self._existing(path, "PUT")
        self._check_version("PUT", path, current, body["metadata"].get("resourceVersion"))
        if current.get("immutable") and current.get("data") != body.get("data"):
            raise ApiError(f"PUT {path}: 422 field is immutable when `immutable` is set")
        meta = body["metadata"]
        for kept in ("uid", "namespace", "creationTimestamp", "generation"):
            if kept in current["metadata"]:
                meta[kept] = current["metadata"][kept]
        _bump_generation(current, body)
        meta["resourceVersion"] = str(next(self._versions))
        self.objects[path] = body
        return copy.deepcopy(body)

    def _patch(self, path: str, patch: Body) -> Body:
        status = path.endswith("/status")
        target = path[: -len("/status")] if status else path
        current = self._existing(target, "PATCH")
        wanted = (patch.get("metadata") or {}).pop("resourceVersion", None)
        self._check_version("PATCH", path, current, wanted)
        if status:
            _merge(current.setdefault("status", {}), patch.get("status") or {})
        else:
            before = copy.deepcopy(current)
            _merge(current, patch)
            _bump_generation(before, current)
        current["metadata"]["resourceVersion"] = str(next(self._versions))
        if current["metadata"].get("deletionTimestamp") and not current["metadata"].get(
            "finalizers"
        ):
            del self.objects[target]
        return copy.deepcopy(current)

    def _delete(self, path: str, body: Body | None) -> Body:
        current = self._existing(path, "DELETE")
        uid = ((body or {}).get("preconditions") or {}).get("uid")
        if uid is not None and uid != current["metadata"]["uid"]:
            raise Conflict(f"DELETE {path}: 409 precondition failed: uid")
        if current["metadata"].get("finalizers"):
            # as the apiserver: the object stays, marked, and the answer is the object
            current["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
            return copy.deepcopy(current)
        del self.objects[path]
        return {"kind": "Status", "status": "Success"}

    # -- for tests -----------------------------------------------------------------------

    def put(self, path: str, body: Body) -> Body:
        """Arrange an object as an admin would (not logged as a request)."""
        collection, _, name = path.rpartition("/")
        body.setdefault("metadata", {})["name"] = name
        created = self._create(collection, body)
        return created

    def writes(self) -> list[Request]:
        return [r for r in self.requests if r[0] != "GET"]

    def dump(self) -> str:
        return json.dumps(self.objects, sort_keys=True, default=str)


def _bump_generation(before: Body, after: Body) -> None:
    """As the apiserver does for custom resources: a spec change is a new generation."""
    meta = after["metadata"]
    if "generation" in meta and before.get("spec") != after.get("spec"):
        meta["generation"] = int(before["metadata"].get("generation", 1)) + 1


def _is_collection(path: str) -> bool:
    return path.rsplit("/", 1)[-1] in {"secrets", "apikeys", "keypolicies", "events", "namespaces"}


def _cluster_list(collection: str, path: str) -> bool:
    """``/api/v1/secrets`` lists Secrets in every namespace."""
    if collection != "/api/v1/secrets":
        return False
    return path.startswith("/api/v1/namespaces/") and path.split("/")[-2] == "secrets"


def _labels_match(body: Body, wanted: dict[str, str]) -> bool:
    labels = (body.get("metadata") or {}).get("labels") or {}
    return all(labels.get(k) == v for k, v in wanted.items())
