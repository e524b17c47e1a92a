"""The written rules of the tree, checked: CONTRIBUTING's sizes, the package map in
docs/architecture.md, the short top level, and devtools/__init__'s list.

A rule only written down drifts (five modules once broke the 300-line rule); these
tests make each one fail where it is broken, naming the file.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "operator" / "keykeeper"
MAX_MODULE_LINES = 300
MAX_FUNCTION_LINES = 60
MAX_TOP_LEVEL_MODULES = 8

MODULES = sorted(PACKAGE.rglob("*.py"))
PACKAGES = sorted(p.parent for p in PACKAGE.rglob("__init__.py") if p.parent != PACKAGE)


def _name(path: Path) -> str:
    return str(path.relative_to(PACKAGE.parent))


@pytest.mark.parametrize("module", MODULES, ids=_name)
def test_no_module_is_over_300_lines(module: Path) -> None:
    lines = len(module.read_text().splitlines())
    assert lines <= MAX_MODULE_LINES, f"{_name(module)}: {lines} lines; split it by concern"


@pytest.mark.parametrize("module", MODULES, ids=_name)
def test_no_function_is_over_60_lines(module: Path) -> None:
    long = [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines, line {node.lineno})"
        for node in ast.walk(ast.parse(module.read_text()))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long, f"{_name(module)}: {', '.join(long)}"


def test_the_top_level_is_short() -> None:
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL_MODULES, f"{len(top)} modules at the top level: {top}"


@pytest.mark.parametrize("package", PACKAGES, ids=_name)
def test_every_package_is_on_the_architecture_map(package: Path) -> None:
    doc = (ROOT / "docs" / "architecture.md").read_text()
    relative = package.relative_to(PACKAGE).as_posix()
    assert f"{relative}/" in doc, f"docs/architecture.md does not name {relative}/"


def test_every_package_has_a_docstring_saying_its_concern() -> None:
    for package in PACKAGES:
        doc = ast.get_docstring(ast.parse((package / "__init__.py").read_text()))
        assert doc, f"{_name(package)}/__init__.py says nothing of its concern"


def test_devtools_init_names_everything_in_devtools() -> None:
    devtools = ROOT / "devtools"
    doc = ast.get_docstring(ast.parse((devtools / "__init__.py").read_text())) or ""
    named = set(re.findall(r"``(\w+)``", doc))
    present = {p.stem for p in devtools.glob("*.py") if p.stem != "__init__"}
    present |= {p.name for p in devtools.iterdir() if (p / "__init__.py").exists()}
    assert present <= named, f"devtools/__init__ does not name {sorted(present - named)}"
