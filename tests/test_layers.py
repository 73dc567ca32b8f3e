"""The layering of docs/architecture.md, enforced by import-linter's contract in setup.cfg (``lint-imports``):
each layer imports only from the layers below it, so ``agents`` and ``envs`` import nothing from ``crl``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` over the packages in ``root`` (their setup.cfg contract), found before any installed copy."""
    command = Path(sys.executable).with_name("lint-imports")
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([str(command), "--no-cache"], cwd=root, env=env, capture_output=True, text=True, timeout=120)


def test_the_layers_contract_is_kept() -> None:
    result = lint_imports(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_an_agent_importing_crl_breaks_the_contract(tmp_path: Path) -> None:
    """The contract has teeth: a copy of the tree in which ``agents`` imports ``crl`` fails it, naming the import."""
    for package in ("agents", "crl", "envs"):
        shutil.copytree(REPO / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "setup.cfg", tmp_path / "setup.cfg")
    dqn = tmp_path / "agents" / "dqn.py"
    dqn.write_text(dqn.read_text() + "\nfrom crl.run import config  # noqa: E402\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    assert "agents.dqn -> crl.run.config" in result.stdout, result.stdout
