"""scripts/constant_policy.py: a constant action played through a committed run's own evaluation, on the real game."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import constant_policy  # noqa: E402

FREEWAY = ROOT / "benchmarks/results/atari-cpu/candidates/runs/finetune-games_freeway-s0"
MINATAR = ROOT / "benchmarks/results/minatar/tune/runs/finetune-s1000"


@pytest.mark.e2e
def test_pressing_up_crosses_freeway_on_the_runs_own_evaluation_episodes() -> None:
    # the run's evaluation seeds fix the episodes: other seeds or env options give other scores
    up = constant_policy.row(FREEWAY, "UP").split(" | ")
    assert up[1:] == ["freeway", "0", "UP", "21.4", "22, 24, 22, 20, 19 |"]
    noop = constant_policy.row(FREEWAY, "NOOP").split(" | ")
    assert noop[4] == "0.0"


def test_pressing_up_on_minatar_freeway_plays_only_that_game() -> None:
    # MinAtar's full action set is n, l, u, r, d, f: UP is index 2; the run's 10 evaluation episodes, epsilon 0.05
    up = constant_policy.row(MINATAR, "UP", "minatar/freeway").splitlines()
    assert len(up) == 1
    assert up[0].split(" | ")[1:] == ["minatar/freeway", "1000", "UP", "25.0", "30, 26, 38, 21, 35, 24, 32, 23, 11, 10 |"]
    assert constant_policy.row(MINATAR, "NOOP", "minatar/freeway").split(" | ")[4] == "0.0"


def test_bad_input_is_one_line_and_status_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    minimal = shutil.copytree(FREEWAY, tmp_path / "minimal")
    config = (minimal / "config.yaml").read_text()
    assert "full_action_space: true" in config
    (minimal / "config.yaml").write_text(config.replace("full_action_space: true", "full_action_space: false"))
    assert constant_policy.main([str(tmp_path / "nothing")]) == 2
    assert constant_policy.main([str(FREEWAY), "--action", "JUMP"]) == 2
    assert constant_policy.main([str(FREEWAY), "--game", "pong"]) == 2
    assert constant_policy.main([str(minimal)]) == 2  # UP is index 2 of the full set only
    assert constant_policy.main([str(MINATAR), "--action", "UPFIRE"]) == 2  # an ALE name MinAtar does not have
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 5 and "not a run directory" in err[0] and "JUMP" in err[1] and "pong" in err[2]
    assert "full 18-action set" in err[3] and "not a MinAtar action" in err[4]
