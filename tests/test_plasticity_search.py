"""scripts/plasticity_search.py on committed records: the rule's number per protocol, and one line for bad input."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import plasticity_search  # noqa: E402

RECORDS = ROOT / "benchmarks/results/plasticity"


def test_a_row_names_the_change_and_the_later_visits_gap(capsys: pytest.CaptureFixture[str]) -> None:
    assert plasticity_search.main([str(RECORDS / "tune"), str(RECORDS / "protocol-replay4x")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[2].startswith("| `tune` | none (the preset) | 1 | 0.23 | 5 |")
    assert lines[3].startswith("| `protocol-replay4x` | agent.gradient_steps=16 | 1 | 0.14 | 5 | -0.10 |")


def test_a_directory_that_is_not_a_sweep_is_one_line_and_status_2(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert plasticity_search.main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not a sweep with a report" in err
