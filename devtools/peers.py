"""The peer controllers bench/fanout.py compares keykeeper with, built from their Go
modules and cached like the control plane: the Sealed Secrets controller and the
External Secrets Operator (ESO), each run against the bench's control plane under a
ServiceAccount of its own, so the apiserver's audit log counts its requests.

They are benchmark peers only, never shipped or tested against. Building them here
has two quirks of this machine's Go module proxy, both on the record:
* ``go install module/cmd@version`` asks the proxy for the module's version list
  (to check for deprecation), which it refuses for these modules; so each is built
  from a throw-away module that requires the exact version;
* ``sum.golang.org`` lookups for these modules are refused (404), so the build runs
  with ``GOSUMDB=off``: the proxy's bytes are trusted for a benchmark binary.

The Sealed Secrets controller only knows the in-cluster configuration (a token and
CA at ``/var/run/secrets/kubernetes.io/serviceaccount``); it is started in its own
mount namespace (``unshare -m``) with a tmpfs over ``/run`` holding those files, so
nothing on the machine is touched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class GoPeer:
    name: str
    module: str
    version: str
    package: str  # the main package, within the module
    crds: tuple[str, ...]  # CRD files or folders in the module, copied beside the binary

    @property
    def cache(self) -> Path:
        xdg = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        root = Path(os.environ.get("KEYKEEPER_CACHE") or xdg / "keykeeper")
        return root / "peers" / self.name / self.version

    @property
    def binary(self) -> Path:
        return self.cache / self.name

    @property
    def crd_dir(self) -> Path:
        return self.cache / "crds"


SEALED_SECRETS = GoPeer(
    "sealed-secrets-controller",
    "github.com/bitnami/sealed-secrets",
    "v0.40.0",
    "github.com/bitnami/sealed-secrets/cmd/controller",
    ("helm/sealed-secrets/crds/bitnami.com_sealedsecrets.yaml",),
)
EXTERNAL_SECRETS = GoPeer(
    "external-secrets",
    "github.com/external-secrets/external-secrets",
    "v0.16.2",
    "github.com/external-secrets/external-secrets",
    ("config/crds/bases",),
)
PEERS = (SEALED_SECRETS, EXTERNAL_SECRETS)


def build(peer: GoPeer) -> Path:
    """The peer's binary, built once per machine (minutes for ESO, cold)."""
    if peer.binary.exists():
        return peer.binary
    go = shutil.which("go")
    if go is None:
        raise RuntimeError(f"Go is needed to build {peer.name} (a benchmark peer)")
    env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-mod=mod", "GOSUMDB": "off"}
    building = peer.cache.with_name(f"{peer.version}.tmp.{os.getpid()}")
    shutil.rmtree(building, ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix=f"build-{peer.name}-") as tmp:
        module = Path(tmp)
        (module / "go.mod").write_text(
            f"module keykeeper.dev/benchpeer\n\ngo 1.24\n\nrequire {peer.module} {peer.version}\n"
        )
        (module / "tools.go").write_text(
            f'//go:build tools\n\npackage benchpeer\n\nimport _ "{peer.package}"\n'
        )
        for argv in (
            [go, "mod", "tidy"],
            [go, "build", "-trimpath", "-o", str(building / peer.name), peer.package],
        ):
            subprocess.run(argv, cwd=module, env=env, check=True)
        source = subprocess.run(
            [go, "list", "-m", "-f", "{{.Dir}}", peer.module],
            cwd=module,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    (building / "crds").mkdir()
    for item in peer.crds:
        path = Path(source) / item
        for crd in sorted(path.glob("*.yaml")) if path.is_dir() else [path]:
            if crd.name != "kustomization.yaml":
                shutil.copyfile(crd, building / "crds" / crd.name)
    if peer.cache.exists():  # another build finished first
        shutil.rmtree(building)
    else:
        building.replace(peer.cache)
    print(f"built {peer.name} {peer.version} into {peer.binary}", file=sys.stderr)
    return peer.binary


def in_cluster_command(argv: list[str], service_account_dir: Path) -> list[str]:
    """``argv`` run where ``/var/run/secrets/kubernetes.io/serviceaccount`` holds the
    files of ``service_account_dir`` (token, ca.crt, namespace), in a mount namespace
    of its own: the process is the same pid (unshare and sh both exec)."""
    target = "/run/secrets/kubernetes.io/serviceaccount"
    script = (
        f'mount -t tmpfs tmpfs /run && mkdir -p {target} && cp "$1"/* {target}/ '
        '&& shift && exec "$@"'
    )
    return ["unshare", "-m", "sh", "-c", script, "sh", str(service_account_dir), *argv]


if __name__ == "__main__":
    for peer in PEERS:
        print(build(peer))
