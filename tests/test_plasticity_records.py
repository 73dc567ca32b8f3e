"""The plasticity results page quotes only what the committed records regenerate (docs/results/plasticity.md)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "plasticity"
PAGE = ROOT / "docs" / "results" / "plasticity.md"
STAGES = sorted(p.name for p in RESULTS.iterdir() if (p / "runs").is_dir())


@pytest.mark.e2e
def test_every_table_row_of_the_plasticity_page_is_regenerated(tmp_path: Path) -> None:
    generated = []
    for stage in STAGES:
        copy = tmp_path / stage
        shutil.copytree(RESULTS / stage, copy, ignore=shutil.ignore_patterns("report"))
        proc = subprocess.run([sys.executable, "-m", "crl", "sweep", "--report", str(copy)], capture_output=True,
                              text=True, cwd=ROOT)
        assert proc.returncode == 0, proc.stderr[-2000:]
        generated.append((copy / "report" / "report.md").read_text())
    rows = [line for line in PAGE.read_text().splitlines() if line.startswith("| ") and any(c.isdigit() for c in line)]
    assert rows, f"{PAGE} quotes no table"
    missing = [row for row in rows if row not in "\n".join(generated)]
    assert not missing, f"rows of {PAGE.name} that no regenerated table has: {missing[:3]}"
