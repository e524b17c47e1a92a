"""keykeeper's image, built for real: the Dockerfile by buildah on a Debian base made
here from packages (``base.sh``), saved as an OCI archive the node's containerd imports
(``build.sh``), and run by podman under the chart's securityContext (tests of the image
itself). The container storage lives in keykeeper's per-machine cache (``storage.sh``).
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def cache() -> Path:
    xdg = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return Path(os.environ.get("KEYKEEPER_CACHE") or xdg / "keykeeper")


STORAGE = (
    *("--root", str(cache() / "containers" / "storage")),
    *("--runroot", str(cache() / "containers" / "run")),
    *("--storage-driver", "overlay"),
)
ULIMITS = ("--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096")
# what the chart's securityContext asks of the container, as podman says it
RESTRICTED = (
    "--read-only",
    "--user=65532:65532",
    "--cap-drop=ALL",
    "--security-opt=no-new-privileges",
    "--network=none",
)


@dataclass(frozen=True)
class Image:
    archive: Path  # OCI archive, for containerd
    tag: str


def build() -> Image:
    """Build (or reuse: buildah's layers are keyed by the Dockerfile's inputs) the image."""
    out = subprocess.run(
        ["bash", str(HERE / "build.sh")], check=True, stdout=subprocess.PIPE, text=True
    ).stdout.split()
    return Image(Path(out[-2]), out[-1])


def podman(
    *args: str, check: bool = True, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["podman", *STORAGE, *args], capture_output=True, text=True, check=check, timeout=timeout
    )


def run(image: Image, *argv: str, entrypoint: str = "") -> subprocess.CompletedProcess[str]:
    """Run ``argv`` in a container of the image, restricted as the chart's Pods are."""
    chosen = (f"--entrypoint={entrypoint}",) if entrypoint else ()
    return podman("run", "--rm", *ULIMITS, *RESTRICTED, *chosen, image.tag, *argv, check=False)


class Mounted:
    """The image's filesystem, read from the host (``podman image mount``)."""

    def __init__(self, image: Image) -> None:
        self.image = image
        self.root = Path()

    def __enter__(self) -> Path:
        self.root = Path(podman("image", "mount", self.image.tag).stdout.strip())
        return self.root

    def __exit__(self, *_: object) -> None:
        podman("image", "unmount", self.image.tag, check=False)
