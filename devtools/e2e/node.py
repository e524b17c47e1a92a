"""A small node agent for the e2e suite: a Node that runs Pods as local processes.

There is no container runtime here, so this stands in for kubelet (and, being the only
node, for the scheduler) just far enough for the chart's Deployment to run for real:

* it registers the Node ``e2e-node`` (Ready) and binds every unscheduled Pod to it;
* each container's ``command`` + ``args`` runs as a local process from an *image
  root* (``devtools/e2e/image.py``): ``/opt/keykeeper`` inside is the venv built by
  the Dockerfile's steps, bind-mounted;
* the process gets the Pod's env (values, ``$(VAR)`` expansion, downward-API fields,
  Secret and ConfigMap keys), its volumes (``emptyDir`` as a folder; a ``projected``
  volume with a ServiceAccount token from the TokenRequest API bound to the Pod, the
  ``kube-root-ca.crt`` ConfigMap and downward-API files), and
  ``KUBERNETES_SERVICE_HOST/PORT`` pointing at the apiserver (there is no kube-proxy);
* each Pod gets its own loopback IP (127.0.1.N) as ``status.podIP``;
* the container's ``securityContext`` is applied where a process can have it: the
  root filesystem is read-only for it when ``readOnlyRootFilesystem`` is set (a
  per-mount read-only bind in its own mount namespace), every capability is dropped
  (bounding and inheritable sets) and ``no_new_privs`` is set. It still runs as uid 0:
  the image's venv links to this machine's Python under /root, which a non-root uid
  cannot reach (Pod Security admission checks runAsNonRoot on the API side);
* readiness and liveness ``httpGet`` probes are run; Ready and the container
  statuses are reported; a container that exits is restarted (restartPolicy Always)
  with its restart count; a Pod being deleted gets SIGTERM, then SIGKILL after its
  grace period, and is then removed, as kubelet does.

Mount points that do not exist on this machine (``/opt/keykeeper``,
``/var/lib/keykeeper/audit``) are created as empty folders; nothing else outside the
agent's work folder is written. Logs of each container go to ``<workdir>/logs``.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import re
import shlex
import shutil
import signal
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from devtools.controlplane import ControlPlane

log = logging.getLogger("devtools.e2e.node")
NODE = "e2e-node"
TICK = 0.25


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Container:
    pod_uid: str
    namespace: str
    pod: str
    name: str
    ip: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    started_at: str = ""
    restarts: int = 0
    ready: bool = False
    next_start: float = 0.0
    last_exit: dict[str, Any] | None = None
    probe_failures: int = 0
    next_probe: float = 0.0
    next_liveness: float = 0.0
    terminating_since: float | None = None  # SIGTERM sent (monotonic)
    spec: dict[str, Any] = field(default_factory=dict)


class NodeAgent:
    def __init__(self, plane: ControlPlane, images: dict[str, Path], workdir: Path) -> None:
        self.plane = plane
        self.images = images  # image repository (without tag/digest) -> image root
        self.workdir = workdir
        self.logs = workdir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.containers: dict[str, Container] = {}  # pod uid -> its (one) container
        self._ips = iter(f"127.0.1.{n}" for n in range(2, 255))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        assert plane.admin is not None
        self._ssl = ssl.create_default_context(cafile=str(plane.ca.cert))
        config = _kubeconfig_user(plane.admin.kubeconfig)
        self._ssl.load_cert_chain(config["client-certificate"], config["client-key"])
        self.errors: list[str] = []

    # -- the API -------------------------------------------------------------------------------

    def api(self, method: str, path: str, body: Any = None, content: str = "") -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.plane.server + path, data=data, method=method)
        request.add_header("Content-Type", content or "application/json")
        request.add_header("User-Agent", "keykeeper-e2e-node-agent")
        with urllib.request.urlopen(request, context=self._ssl, timeout=30) as answer:
            return json.load(answer)

    def api_or_none(self, method: str, path: str, body: Any = None, content: str = "") -> Any:
        try:
            return self.api(method, path, body, content)
        except urllib.error.HTTPError as exc:
            if exc.code in (404, 409):
                return None
            raise

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> NodeAgent:
        self._register()
        self._thread = threading.Thread(target=self._loop, name="e2e-node-agent", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        with self._lock:
            for container in self.containers.values():
                self._kill(container, signal.SIGKILL, reap=True)

    def _register(self) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": NODE,
                "labels": {"kubernetes.io/hostname": NODE, "kubernetes.io/os": "linux"},
            },
        }
        self.api_or_none("POST", "/api/v1/nodes", body)
        status = {
            "status": {
                "capacity": {"cpu": "2", "memory": "24Gi", "pods": "110"},
                "allocatable": {"cpu": "2", "memory": "24Gi", "pods": "110"},
                "addresses": [
                    {"type": "InternalIP", "address": "127.0.0.1"},
                    {"type": "Hostname", "address": NODE},
                ],
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True",
                        "reason": "KubeletReady",
                        "message": "keykeeper's e2e node agent is running",
                        "lastHeartbeatTime": _now(),
                        "lastTransitionTime": _now(),
                    }
                ],
                "nodeInfo": {
                    "kubeletVersion": "v1.36.3",
                    "containerRuntimeVersion": "local-process://1",
                    "operatingSystem": "linux",
                    "architecture": "amd64",
                    "osImage": "",
                    "kernelVersion": os.uname().release,
                    "kubeProxyVersion": "",
                    "machineID": "",
                    "systemUUID": "",
                    "bootID": "",
                },
            }
        }
        self.api("PATCH", f"/api/v1/nodes/{NODE}/status", status, "application/merge-patch+json")

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._tick()
            except Exception as exc:  # keep going; the test sees the error list
                self.errors.append(f"{type(exc).__name__}: {exc}")
                log.exception("node agent tick")
            self._stop.wait(TICK)

    # -- one pass ------------------------------------------------------------------------------

    def _tick(self) -> None:
        pending = self.api("GET", "/api/v1/pods?fieldSelector=spec.nodeName%3D")["items"]
        for pod in pending:
            if not pod["metadata"].get("deletionTimestamp"):
                self._bind(pod)
        mine = self.api("GET", f"/api/v1/pods?fieldSelector=spec.nodeName%3D{NODE}")["items"]
        seen = set()
        for pod in mine:
            uid = pod["metadata"]["uid"]
            seen.add(uid)
            with self._lock:
                container = self.containers.get(uid)
            if pod["metadata"].get("deletionTimestamp"):
                self._terminate(pod, container)
            elif container is None:
                self._create(pod)
            else:
                self._supervise(pod, container)
        with self._lock:
            for uid in [u for u in self.containers if u not in seen]:
                self._kill(self.containers.pop(uid), signal.SIGKILL, reap=True)  # force-deleted

    def _bind(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        binding = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
            "target": {"apiVersion": "v1", "kind": "Node", "name": NODE},
        }
        self.api_or_none(
            "POST", f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/binding", binding
        )

    # -- starting a Pod ------------------------------------------------------------------------

    def _create(self, pod: dict[str, Any]) -> None:
        meta, spec = pod["metadata"], pod["spec"]
        if len(spec["containers"]) != 1 or spec.get("initContainers"):
            raise RuntimeError(f"{meta['name']}: the agent runs one container per Pod")
        ip = next(self._ips)
        self._status(pod, phase="Pending", ip=ip, containers=[])
        pod = self.api("GET", f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}")
        spec_c = spec["containers"][0]
        env = self._env(pod, spec_c)
        container = Container(
            meta["uid"],
            meta["namespace"],
            meta["name"],
            spec_c["name"],
            ip,
            [*spec_c.get("command", []), *spec_c.get("args", [])],
            env,
            self.logs / f"{meta['namespace']}_{meta['name']}_{spec_c['name']}.log",
            spec=spec_c,
        )
        container.argv = [_expand(a, env) for a in container.argv]
        root = self._image_root(spec_c["image"])
        container.argv = self._sandboxed(pod, spec_c, root, container)
        with self._lock:
            self.containers[meta["uid"]] = container
        self._start(container)
        self._report(pod, container)

    def _image_root(self, image: str) -> Path:
        repository = image.split("@", 1)[0]
        if ":" in repository.rsplit("/", 1)[-1]:
            repository = repository.rsplit(":", 1)[0]
        if repository not in self.images:
            raise RuntimeError(f"image {image}: the agent knows only {sorted(self.images)}")
        return self.images[repository]

    def _env(self, pod: dict[str, Any], spec_c: dict[str, Any]) -> dict[str, str]:
        meta = pod["metadata"]
        env: dict[str, str] = {
            "PATH": "/opt/keykeeper/bin:/usr/local/bin:/usr/bin:/bin",
            "HOSTNAME": meta["name"],
            "HOME": "/tmp",
            "KUBERNETES_SERVICE_HOST": "127.0.0.1",
            "KUBERNETES_SERVICE_PORT": self.plane.server.rsplit(":", 1)[1],
        }
        for item in spec_c.get("env", []):
            name = item["name"]
            if "valueFrom" not in item:  # the API drops an empty value: as a kubelet, ""
                env[name] = _expand(item.get("value", ""), env)
                continue
            source = item.get("valueFrom", {})
            if "fieldRef" in source:
                env[name] = _field(pod, source["fieldRef"]["fieldPath"])
            elif "secretKeyRef" in source:
                ref = source["secretKeyRef"]
                secret = self.api(
                    "GET", f"/api/v1/namespaces/{meta['namespace']}/secrets/{ref['name']}"
                )
                env[name] = base64.b64decode(secret["data"][ref["key"]]).decode()
            elif "configMapKeyRef" in source:
                ref = source["configMapKeyRef"]
                found = self.api(
                    "GET", f"/api/v1/namespaces/{meta['namespace']}/configmaps/{ref['name']}"
                )
                env[name] = found["data"][ref["key"]]
            else:
                raise RuntimeError(f"env {name}: source {sorted(source)} is not supported")
        return env

    def _sandboxed(
        self, pod: dict[str, Any], spec_c: dict[str, Any], root: Path, container: Container
    ) -> list[str]:
        """The argv that runs the container's process in its own mount namespace, its
        volumes and image mounted, the root read-only, no capabilities."""
        meta = pod["metadata"]
        pod_dir = self.workdir / "pods" / meta["uid"]
        shutil.rmtree(pod_dir, ignore_errors=True)
        volumes: dict[str, Path] = {}
        for volume in pod["spec"].get("volumes", []):
            target = pod_dir / "volumes" / volume["name"]
            target.mkdir(parents=True)
            if "emptyDir" in volume:
                pass
            elif "projected" in volume:
                self._projected(pod, volume["projected"], target)
            else:
                raise RuntimeError(f"volume {volume['name']}: only emptyDir and projected")
            volumes[volume["name"]] = target
        binds: list[tuple[Path, str, bool]] = [(root / "opt" / "keykeeper", "/opt/keykeeper", True)]
        for mount in spec_c.get("volumeMounts", []):
            binds.append((volumes[mount["name"]], mount["mountPath"], bool(mount.get("readOnly"))))
        security = spec_c.get("securityContext") or {}
        lines = ["set -e"]
        for _, target, _ in binds:
            if not target.startswith(("/run/", "/var/run/")):
                Path(target).mkdir(parents=True, exist_ok=True)  # a mount point
        lines.append("mount -t tmpfs tmpfs /run")  # /var/run is /run here
        for source, target, read_only in binds:
            real = target.replace("/var/run/", "/run/", 1)
            lines.append(f"mkdir -p {shlex.quote(real)}")
            lines.append(f"mount --bind {shlex.quote(str(source))} {shlex.quote(real)}")
            if read_only:
                lines.append(f"mount -o remount,bind,ro {shlex.quote(real)}")
        if security.get("readOnlyRootFilesystem"):
            lines.append("mount -o remount,bind,ro /")
        drop = (security.get("capabilities") or {}).get("drop") or []
        setpriv = ["setpriv"]
        if security.get("allowPrivilegeEscalation") is False:
            setpriv.append("--no-new-privs")
        if "ALL" in drop:
            setpriv += ["--bounding-set=-all", "--inh-caps=-all"]
        workdir = spec_c.get("workingDir") or "/"
        lines.append(f"cd {shlex.quote(workdir)}")
        lines.append('exec "$@"')
        return ["unshare", "-m", "sh", "-c", "\n".join(lines), "sh", *setpriv, *container.argv]

    def _projected(self, pod: dict[str, Any], projected: dict[str, Any], target: Path) -> None:
        meta, spec = pod["metadata"], pod["spec"]
        mode = projected.get("defaultMode", 0o644)
        for source in projected.get("sources", []):
            if "serviceAccountToken" in source:
                item = source["serviceAccountToken"]
                request = {
                    "apiVersion": "authentication.k8s.io/v1",
                    "kind": "TokenRequest",
                    "spec": {
                        "audiences": [item["audience"]] if item.get("audience") else None,
                        "expirationSeconds": item.get("expirationSeconds", 3600),
                        "boundObjectRef": {
                            "apiVersion": "v1",
                            "kind": "Pod",
                            "name": meta["name"],
                            "uid": meta["uid"],
                        },
                    },
                }
                sa = spec.get("serviceAccountName", "default")
                token = self.api(
                    "POST",
                    f"/api/v1/namespaces/{meta['namespace']}/serviceaccounts/{sa}/token",
                    request,
                )["status"]["token"]
                _write(target / item["path"], token, mode)
            elif "configMap" in source:
                ref = source["configMap"]
                found = None
                for _ in range(120):  # kube-root-ca.crt is published by the controller manager
                    found = self.api_or_none(
                        "GET", f"/api/v1/namespaces/{meta['namespace']}/configmaps/{ref['name']}"
                    )
                    if found is not None:
                        break
                    time.sleep(0.5)
                if found is None:
                    raise RuntimeError(f"ConfigMap {ref['name']} never appeared")
                for entry in ref.get("items") or [{"key": k, "path": k} for k in found["data"]]:
                    _write(target / entry["path"], found["data"][entry["key"]], mode)
            elif "downwardAPI" in source:
                for entry in source["downwardAPI"]["items"]:
                    _write(
                        target / entry["path"], _field(pod, entry["fieldRef"]["fieldPath"]), mode
                    )
            else:
                raise RuntimeError(f"projected source {sorted(source)} is not supported")

    # -- running -------------------------------------------------------------------------------

    def _start(self, container: Container) -> None:
        handle = open(container.log_path, "ab")  # noqa: SIM115 - the child keeps it
        try:
            container.proc = subprocess.Popen(
                container.argv,
                env=container.env,
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            handle.close()
        container.started_at = _now()
        container.ready = False
        container.probe_failures = 0
        delay = (container.spec.get("livenessProbe") or {}).get("initialDelaySeconds", 0)
        container.next_liveness = time.monotonic() + delay

    def _supervise(self, pod: dict[str, Any], container: Container) -> None:
        proc = container.proc
        if proc is not None and proc.poll() is not None:
            container.last_exit = {
                "terminated": {
                    "exitCode": proc.returncode if proc.returncode >= 0 else 128 - proc.returncode,
                    "reason": "Error" if proc.returncode else "Completed",
                    "startedAt": container.started_at,
                    "finishedAt": _now(),
                }
            }
            container.proc = None
            container.ready = False
            backoff = min(10.0, 1.0 * 2 ** min(container.restarts, 4))
            container.next_start = time.monotonic() + backoff
            self._report(pod, container)
            return
        if container.proc is None:
            if time.monotonic() >= container.next_start:
                container.restarts += 1
                self._start(container)
                self._report(pod, container)
            return
        now = time.monotonic()
        changed = False
        readiness = container.spec.get("readinessProbe")
        if readiness and now >= container.next_probe:
            container.next_probe = now + readiness.get("periodSeconds", 10)
            ok = self._probe(container, readiness)
            if ok != container.ready:
                container.ready, changed = ok, True
        elif not readiness and not container.ready:
            container.ready, changed = True, True
        liveness = container.spec.get("livenessProbe")
        if liveness and now >= container.next_liveness:
            container.next_liveness = now + liveness.get("periodSeconds", 10)
            if self._probe(container, liveness):
                container.probe_failures = 0
            else:
                container.probe_failures += 1
                if container.probe_failures >= liveness.get("failureThreshold", 3):
                    self._kill(container, signal.SIGKILL)  # restarted on the next tick
        if changed:
            self._report(pod, container)

    def _probe(self, container: Container, probe: dict[str, Any]) -> bool:
        get = probe.get("httpGet")
        if get is None:
            return True
        port = get["port"]
        if isinstance(port, str):
            port = next(
                p["containerPort"] for p in container.spec.get("ports", []) if p["name"] == port
            )
        url = f"http://{container.ip}:{port}{get.get('path', '/')}"
        try:
            with urllib.request.urlopen(url, timeout=probe.get("timeoutSeconds", 1)) as answer:
                return bool(200 <= answer.status < 400)
        except (urllib.error.URLError, OSError):
            return False

    def _kill(self, container: Container, sig: int, *, reap: bool = False) -> None:
        if container.proc is not None and container.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(container.proc.pid, sig)
            if reap:
                container.proc.wait(timeout=30)

    def kill(self, pod_name: str, sig: int = signal.SIGKILL) -> int:
        """Signal a Pod's container process (a test's crash); returns its pid."""
        with self._lock:
            for container in self.containers.values():
                if container.pod == pod_name and container.proc is not None:
                    pid = container.proc.pid
                    self._kill(container, sig)
                    return pid
        raise KeyError(pod_name)

    def _terminate(self, pod: dict[str, Any], container: Container | None) -> None:
        meta = pod["metadata"]
        if container is not None and container.proc is not None:
            if container.terminating_since is None:
                container.terminating_since = time.monotonic()
                self._kill(container, signal.SIGTERM)
            grace = pod["spec"].get("terminationGracePeriodSeconds", 30)
            if container.proc.poll() is None:
                if time.monotonic() - container.terminating_since < grace:
                    return
                self._kill(container, signal.SIGKILL)
                container.proc.wait(timeout=10)
        with self._lock:
            self.containers.pop(meta["uid"], None)
        body = {"gracePeriodSeconds": 0, "preconditions": {"uid": meta["uid"]}}
        self.api_or_none(
            "DELETE", f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}", body
        )

    # -- status --------------------------------------------------------------------------------

    def _report(self, pod: dict[str, Any], container: Container) -> None:
        running = container.proc is not None
        state: dict[str, Any] = (
            {"running": {"startedAt": container.started_at}}
            if running
            else {"waiting": {"reason": "CrashLoopBackOff"}}
        )
        status = {
            "name": container.name,
            "image": container.spec["image"],
            "imageID": "",
            "containerID": f"local-process://{container.proc.pid if container.proc else 0}",
            "ready": container.ready,
            "started": running,
            "restartCount": container.restarts,
            "state": state,
        }
        if container.last_exit:
            status["lastState"] = container.last_exit
        self._status(pod, phase="Running", ip=container.ip, containers=[status])

    def _status(
        self, pod: dict[str, Any], *, phase: str, ip: str, containers: list[dict[str, Any]]
    ) -> None:
        meta = pod["metadata"]
        ready = "True" if containers and all(c["ready"] for c in containers) else "False"
        conditions = [
            {"type": "PodScheduled", "status": "True"},
            {"type": "Initialized", "status": "True"},
            {"type": "ContainersReady", "status": ready},
            {"type": "Ready", "status": ready},
        ]
        for condition in conditions:
            condition["lastTransitionTime"] = _now()
        body = {
            "status": {
                "phase": phase,
                "hostIP": "127.0.0.1",
                "hostIPs": [{"ip": "127.0.0.1"}],
                "podIP": ip,
                "podIPs": [{"ip": ip}],
                "startTime": meta.get("creationTimestamp") or _now(),
                "conditions": conditions,
                "containerStatuses": containers,
                "qosClass": "Burstable",
            }
        }
        self.api_or_none(
            "PATCH",
            f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/status",
            body,
            "application/merge-patch+json",
        )

    # -- for tests -----------------------------------------------------------------------------

    def pods(self) -> dict[str, Container]:
        with self._lock:
            return {c.pod: c for c in self.containers.values()}

    def log_of(self, pod_name: str) -> str:
        container = self.pods().get(pod_name)
        if container is None:
            matches = sorted(self.logs.glob(f"*_{pod_name}_*.log"))
            return matches[-1].read_text(errors="replace") if matches else ""
        return container.log_path.read_text(errors="replace")


def _field(pod: dict[str, Any], path: str) -> str:
    meta, spec, status = pod["metadata"], pod["spec"], pod.get("status") or {}
    fields = {
        "metadata.name": meta["name"],
        "metadata.namespace": meta["namespace"],
        "metadata.uid": meta["uid"],
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.podIP": status.get("podIP", ""),
        "status.hostIP": status.get("hostIP", ""),
    }
    if path not in fields:
        raise RuntimeError(f"fieldRef {path} is not supported")
    return str(fields[path])


def _expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: known variables are replaced, $$ escapes."""

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env.get(name, match.group(0))

    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)", one, text)


def _write(path: Path, text: str, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def _kubeconfig_user(kubeconfig: Path) -> dict[str, str]:
    import yaml

    config = yaml.safe_load(kubeconfig.read_text())
    return dict(config["users"][0]["user"])
