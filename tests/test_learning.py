"""The agent learns: a single-game MinAtar run at a small budget ends clearly above random play, and the same run
with a learning rate of 0 does not (so the test cannot pass by luck of the untrained network or the evaluation).

Budget calibrated in docs/minatar.md ("Learning test"): Space Invaders, 15,000 env steps, ~1 minute on 2 cores.
Random play scores 2.7 (crl/data/minatar_scores.csv); with the default learning rate 1e-3 the runs of seeds 0-4 ended
at 18.8, 22.5, 9.9, 19.4 and 15.9, with learning rate 0 seeds 0 and 1 at 0.0 and 0.3 (the untrained network's greedy
policy plays worse than random). The test runs seed 0.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_crl

THRESHOLD = 8.0  # about 3x random play's 2.7
BUDGET = [
    "--games", "minatar/space_invaders", "--steps-per-game", "15000", "--eval-every", "0", "--eval-episodes", "10",
    "--eval-max-steps", "2000", "--n-envs", "4", "--device", "cpu", "--seed", "0",
    "--set", "agent.buffer_size=20000", "--set", "agent.exploration_steps=10000", "--set", "agent.learning_starts=1000",
]


def final_return(run_dir: Path) -> float:
    records = [json.loads(line) for line in (run_dir / "evals.jsonl").read_text().splitlines()]
    return records[-1]["mean_return"]


@pytest.mark.e2e
@pytest.mark.parametrize("learning_rate, learns", [("1e-3", True), ("0", False)])
def test_space_invaders_is_learned_above_random_play(tmp_path: Path, learning_rate: str, learns: bool) -> None:
    run_crl("train", *BUDGET, "--set", f"agent.learning_rate={learning_rate}", "--run-dir", str(tmp_path / "run"))
    score = final_return(tmp_path / "run")
    assert (score > THRESHOLD) == learns, f"final return {score} with learning rate {learning_rate}"
