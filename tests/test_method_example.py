"""The README's "Writing a method" example, run as written: its code block saved as a new file in ``crl/methods`` of
a copy of the package (nothing else edited) registers itself, is offered by ``crl train --help``, passes the method
contract (tests/test_method_contract.py) and trains end to end."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, TINY

pytestmark = pytest.mark.e2e  # real games end to end: `-m "not e2e"` skips them

SECTION = "### Writing a method"


def readme_example() -> tuple[str, str]:
    """The code block of the README's "Writing a method" section, and the file name the section gives it."""
    text = (REPO / "README.md").read_text()
    section = text[text.index(SECTION):]
    section = section[: section.find("\n#", len(SECTION))]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    saved_as = re.search(r"saved as `crl/methods/(\w+\.py)`", section)
    assert code and saved_as, "the README's method section has no python block or no file name for it"
    return code.group(1), saved_as.group(1)


def method_name(code: str) -> str:
    """The ``name`` the example's class sets."""
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["name"]:
            return node.value.value
    raise AssertionError("the example sets no name")


@pytest.fixture
def package_with_example(tmp_path: Path) -> tuple[Path, str]:
    """A copy of the packages and tests with the README's example added as its own file; the repository itself is
    never written, so other processes using it never see the example."""
    code, file_name = readme_example()
    copy = tmp_path / "repo"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for package in ("agents", "envs", "crl", "tests"):
        shutil.copytree(REPO / package, copy / package, ignore=ignore)
    shutil.copy(REPO / "setup.cfg", copy / "setup.cfg")
    (copy / "crl" / "methods" / file_name).write_text(code)
    return copy, method_name(code)


def run_in(copy: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(copy), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=copy)
    assert proc.returncode == 0, f"{' '.join(args)} exited {proc.returncode}:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}"
    return proc


def test_readme_example_registers_passes_the_contract_and_trains(package_with_example: tuple[Path, str]) -> None:
    copy, name = package_with_example
    registered = run_in(copy, "-c", "import crl.methods as m; print(m.METHODS[%r].__module__)" % name)
    assert registered.stdout.strip().startswith("crl.methods.")
    assert name in run_in(copy, "-m", "crl", "train", "--help").stdout

    contract = run_in(copy, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_method_contract.py",
                      "-k", f"{name} and not atari")
    passed = re.search(r"(\d+) passed", contract.stdout)
    assert passed and int(passed.group(1)) >= 6 and "failed" not in contract.stdout, contract.stdout[-2000:]

    run_dir = copy / "run"
    run_in(copy, "-m", "crl", "train", "--method", name, "--games", "minatar/breakout", "--run-dir", str(run_dir),
           *TINY)
    assert (run_dir / "metrics.json").exists() and (run_dir / "model.zip").exists()
    assert f"\n{name.replace('-', '_')}:\n" in (run_dir / "config.yaml").read_text()
