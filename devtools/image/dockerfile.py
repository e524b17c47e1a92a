"""The Dockerfile and its build context as the static checks read them (tests/chart):
its stages by the official BuildKit parser (the ``dockerfile`` package) rather than by
grepping, and the files ``.dockerignore`` lets into the context. The image itself is
built by buildah (``build.sh``)."""

from __future__ import annotations

import fnmatch
import os
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
