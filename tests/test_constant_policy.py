"""scripts/constant_policy.py: a constant action played through a committed run's own evaluation, on the real game."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import constant_policy  # noqa: E402

FREEWAY = ROOT / "benchmarks/results/atari-cpu/candidates/runs/finetune-games_freeway-s0"


@pytest.mark.e2e
def test_pressing_up_crosses_freeway_and_standing_still_scores_nothing() -> None:
    up = constant_policy.row(FREEWAY, "UP").split(" | ")
    noop = constant_policy.row(FREEWAY, "NOOP").split(" | ")
    assert up[1:4] == ["freeway", "0", "UP"] and float(up[4]) > 15  # the agent's "21" level is this policy's
    assert float(noop[4]) == 0.0


def test_bad_input_is_one_line_and_status_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert constant_policy.main([str(tmp_path)]) == 2
    assert constant_policy.main([str(FREEWAY), "--action", "JUMP"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "not a run directory" in err[0] and "JUMP" in err[1]
