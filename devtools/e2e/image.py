"""The operator's image without a container engine: the Dockerfile's build stage, run
for real on this machine, so the code the image would run is the code e2e runs.

No container engine or registry is reachable here, so the image is not built. What is
exercised instead, by parsing the Dockerfile with the official BuildKit parser (the
``dockerfile`` package) rather than by grepping it:

* the build stage's ``COPY`` steps copy from the build context as ``.dockerignore``
  filters it (what the image would get, and nothing else);
* its ``ENV`` and ``RUN`` steps run verbatim, by ``sh -c``, in a mount namespace of
  their own (``unshare -m``) where the stage's directories (``WORKDIR``, the wheel
  directory, the venv) are bind mounts of folders under the image root: so
  ``/opt/keykeeper`` inside is ``<root>/opt/keykeeper`` outside, shebangs and all;
* the final stage's ``COPY --from=build`` names what the image keeps.

What is *not* exercised: the base image itself (this machine's Python 3.11 stands in
for ``python:3.11-slim``), ``USER``, ``LABEL`` and the final stage's filesystem (the
e2e node agent enforces a read-only root, dropped capabilities and no privilege
escalation on the process; it does not switch to the image's UID: see node.py).
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import dockerfile

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Stage:
    name: str
    workdir: str = "/"
    env: dict[str, str] = field(default_factory=dict)
    copies: list[tuple[list[str], str]] = field(default_factory=list)  # (sources, dest)
    runs: list[str] = field(default_factory=list)
    from_stage: list[tuple[str, str, str]] = field(default_factory=list)  # (stage, src, dest)
    user: str = ""
    entrypoint: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)


def stages(path: Path = REPO / "Dockerfile") -> list[Stage]:
    """The Dockerfile's stages, as the BuildKit parser reads it."""
    out: list[Stage] = []
    for command in dockerfile.parse_file(str(path)):
        cmd, value = command.cmd.upper(), list(command.value)
        if cmd == "FROM":
            name = value[2] if len(value) == 3 and value[1].upper() == "AS" else str(len(out))
            out.append(Stage(name))
            continue
        if not out:
            continue  # ARG before the first FROM
        stage = out[-1]
        if cmd == "WORKDIR":
            stage.workdir = os.path.join(stage.workdir, value[0])
        elif cmd == "ENV":
            stage.env.update(zip(value[0::2], value[1::2], strict=True))
        elif cmd == "COPY":
            source = next((f[7:] for f in command.flags if f.startswith("--from=")), None)
            dest = os.path.join(stage.workdir, value[-1])
            if source is None:
                stage.copies.append((value[:-1], dest))
            else:
                stage.from_stage.extend((source, src, dest) for src in value[:-1])
        elif cmd == "RUN":
            stage.runs.append(value[0])
        elif cmd == "USER":
            stage.user = value[0]
        elif cmd == "ENTRYPOINT":
            stage.entrypoint = value if command.json else ["/bin/sh", "-c", value[0]]
        elif cmd == "LABEL":
            stage.labels.update(
                {k: v.strip('"') for k, v in zip(value[0::2], value[1::2], strict=True)}
            )
    return out


def ignored(relative: str, patterns: list[str]) -> bool:
    """``.dockerignore`` as Docker reads it for the patterns this repository uses: the
    last matching pattern decides, ``!`` re-includes, a pattern matching a folder covers
    what is in it. (Python's fnmatch lets ``*`` cross ``/``, where Go's Match does not;
    ``tests/chart`` checks the resulting context, file by file.)"""
    verdict = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        body = pattern[1:] if negate else pattern
        body = body.rstrip("/")
        parts = relative.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatchcase(p, body) for p in prefixes) or fnmatch.fnmatchcase(
            relative, body.replace("**/", "*/").replace("/**", "/*")
        ):
            verdict = not negate
    return verdict


def context_files(root: Path = REPO) -> list[str]:
    """The build context: every file ``.dockerignore`` lets through."""
    patterns = [
        line.strip()
        for line in (root / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    files = []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).as_posix()
        if path.is_file() and not relative.startswith(".git/") and not ignored(relative, patterns):
            files.append(relative)
    return files


def cache_root() -> Path:
    xdg = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return Path(os.environ.get("KEYKEEPER_CACHE") or xdg / "keykeeper") / "e2e" / "images"


def build(root: Path | None = None, *, reuse: bool = False) -> Path:
    """Run the build stage into ``root`` (fresh each time: a new venv from the wheel;
    with ``reuse``, an image root already built from the same context is kept);
    returns the image root, where ``<root>/opt/keykeeper`` is the image's venv."""
    all_stages = stages()
    final = all_stages[-1]
    (source_stage, kept, dest) = final.from_stage[0]
    build_stage = next(s for s in all_stages if s.name == source_stage)
    files = context_files()
    digest = hashlib.sha256()
    for relative in files:
        digest.update(relative.encode() + b"\0" + (REPO / relative).read_bytes())
    root = root or cache_root() / digest.hexdigest()[:16]
    done = root / ".built"
    if reuse and done.exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix="keykeeper-image-") as tmp:
        stage_root = Path(tmp)
        for sources, target in build_stage.copies:
            for source in sources:
                for relative in files:
                    if relative == source or relative.startswith(source.rstrip("/") + "/"):
                        inside = relative[len(source) :].lstrip("/")
                        into = Path(target) / inside if inside else _into(target, relative)
                        out = stage_root / into.relative_to("/")
                        out.parent.mkdir(parents=True, exist_ok=True)
                        shutil.copyfile(REPO / relative, out)
        mounts = {build_stage.workdir, "/wheels", kept}
        script = "".join(
            f'mkdir -p "{m}" "$1{m}" && mount --bind "$1{m}" "{m}" && ' for m in sorted(mounts)
        )
        script += f'cd "{build_stage.workdir}" && ' + " && ".join(
            f"({run})" for run in build_stage.runs
        )
        for m in sorted(mounts):
            (stage_root / m.lstrip("/")).mkdir(parents=True, exist_ok=True)
        python = Path(sys.executable).resolve().parent
        env = {
            "PATH": f"{_python_bin(python)}:/usr/local/bin:/usr/bin:/bin",
            "HOME": tmp,
            **build_stage.env,
        }
        subprocess.run(
            ["unshare", "-m", "sh", "-c", script, "sh", str(stage_root)],
            env=env,
            check=True,
        )
        copied = root / dest.lstrip("/")
        copied.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(stage_root / kept.lstrip("/"), copied, symlinks=True)
    done.write_text(digest.hexdigest() + "\n")
    return root


def _into(target: str, relative: str) -> Path:
    return Path(target) / Path(relative).name if target.endswith("/") else Path(target)


def _python_bin(venv_bin: Path) -> Path:
    """A bin directory whose ``python`` is a plain interpreter (not the tests' venv)."""
    config = venv_bin.parent / "pyvenv.cfg"
    if config.exists():
        for line in config.read_text().splitlines():
            if line.startswith("home"):
                return Path(line.split("=", 1)[1].strip())
    return venv_bin


if __name__ == "__main__":
    print(build())
