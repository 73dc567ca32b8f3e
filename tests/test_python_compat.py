"""The package runs on every Python setup.cfg allows (>= 3.10): no syntax or standard-library name from later."""

from __future__ import annotations

import ast
import configparser
from pathlib import Path

import pytest

from tests.conftest import REPO

# Standard-library names added after 3.10 that a module could import.
NEWER = {
    "typing": {"Self", "LiteralString", "Never", "assert_never", "assert_type", "reveal_type", "TypeVarTuple",
               "Unpack", "Required", "NotRequired", "dataclass_transform", "get_overloads", "clear_overloads",
               "override", "TypeAliasType", "ReadOnly", "TypeIs"},
    "enum": {"StrEnum", "ReprEnum", "verify", "EnumCheck", "FlagBoundary"},
    "datetime": {"UTC"},
}
NEWER_MODULES = {"tomllib", "wsgiref.types"}
SOURCES = sorted(p for d in ("crl", "agents", "envs", "scripts") for p in (REPO / d).rglob("*.py"))


def test_setup_cfg_allows_3_10() -> None:
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    assert cfg["options"]["python_requires"].strip() == ">=3.10"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(REPO)))
def test_source_parses_and_imports_as_python_3_10(path: Path) -> None:
    tree = ast.parse(path.read_text(), filename=str(path), feature_version=(3, 10))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module in NEWER:
            newer = {a.name for a in node.names} & NEWER[node.module]
            assert not newer, f"{path}:{node.lineno} imports {newer} from {node.module} (Python 3.11+)"
        if isinstance(node, ast.Import):
            assert not {a.name for a in node.names} & NEWER_MODULES, f"{path}:{node.lineno}"
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in NEWER:
            assert node.attr not in NEWER[node.value.id], f"{path}:{node.lineno} uses {node.value.id}.{node.attr}"
