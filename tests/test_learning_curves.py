"""scripts/learning_curves.py on committed records: one column per planned evaluation, a resumed run included."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import learning_curves  # noqa: E402


def test_a_resumed_runs_evaluations_share_the_planned_columns() -> None:
    # Road Runner seed 0 was resumed at step 125,180: its last evaluation ran at 200,004, not 200,000
    lines = learning_curves.table(ROOT / "benchmarks/results/atari-cpu/candidates")
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    steps = [c for c in header if c.endswith("k")]
    assert len(steps) == len(set(steps)) == 10
    row = next(line for line in lines if line.startswith("| finetune-games_road_runner-s0 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[header.index("200k")] == "1200.0"
