"""`crl train` end to end through the real ALE at a tiny budget: every file of the run directory."""

import json

import numpy as np
import pytest
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from agents import ContinualDQN
from crl.run import rundir
from tests.conftest import run_crl

pytestmark = pytest.mark.e2e  # real games end to end: `-m "not e2e"` skips them


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "ft"
    from tests.conftest import TINY

    proc = run_crl("train", "--games", "Pong,Breakout", "--run-dir", str(run_dir), "--seed", "3", *TINY,
                   "--set", "env.max_episode_steps=80")
    return run_dir, proc


def test_run_directory_files(run):
    run_dir, proc = run
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert cfg["games"] == ["pong", "breakout"] and cfg["method"] == "finetune" and cfg["seed"] == 3
    games, rows = rundir.read_retention(run_dir / "retention.csv")
    assert games == ["pong", "breakout"]
    assert len(rows) == 2 and all(len(r) == 2 for r in rows)  # one row per block, one column per game
    assert (run_dir / "retention.csv").read_text().splitlines()[0] == "after_task,pong,breakout"

    evals = rundir.read_jsonl(run_dir / "evals.jsonl")
    keys = {"step", "task_index", "trained_game", "game", "mean_return", "std_return", "episodes", "hns"}
    assert all(keys <= set(e) for e in evals)
    assert {(e["step"], e["game"]) for e in evals}.__len__() == len(evals)  # no duplicate evaluation
    finals = [e for e in evals if e["final"]]
    assert [(e["trained_game"], e["game"]) for e in finals] == [
        ("pong", "pong"), ("pong", "breakout"), ("breakout", "pong"), ("breakout", "breakout")]
    assert [e["mean_return"] for e in finals] == [v for row in rows for v in row]
    assert any(not e["final"] for e in evals)  # periodic evaluations happened too

    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["retention_matrix"] == rows
    assert metrics["average_final_return"] == pytest.approx(np.mean(rows[-1]))
    assert set(metrics) >= {"final_hns", "forgetting", "backward_transfer", "total_clipped_hns"}

    assert "Retention matrix" in proc.stdout and f"tensorboard --logdir {run_dir / 'tb'}" in proc.stdout


def test_tensorboard_is_one_continuous_run(run):
    run_dir, _ = run
    event_files = list((run_dir / "tb").glob("events.out.tfevents.*"))
    assert len(event_files) == 1
    acc = EventAccumulator(str(run_dir / "tb"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    expected = {"eval/pong/return", "eval/breakout/return", "eval/pong/hns", "eval/breakout/hns", "eval/mean_hns",
                "eval/total_clipped_hns", "train/td_loss", "train/epsilon", "train/task_index",
                "train/pong/episode_return", "train/breakout/episode_return"}
    assert expected <= tags, expected - tags
    task_index = acc.Scalars("train/task_index")
    steps = [e.step for e in task_index]
    assert steps == sorted(steps) and steps[-1] > 300  # the global step keeps counting across games
    assert {e.value for e in task_index} == {0.0, 1.0}
    assert {"report/retention", "report/curves"} <= set(acc.Tags()["images"])
    assert len(acc.Images("report/retention")) == 2  # one per task boundary
    assert "hparams/total_clipped_hns" in tags
    returns = [e.step for e in acc.Scalars("eval/breakout/return")]
    assert returns == sorted(returns) and len(returns) >= 3


def test_checkpoints_and_model_load(run):
    run_dir, _ = run
    first = ContinualDQN.load(run_dir / "checkpoints" / "task-0.zip", device="cpu")
    final = ContinualDQN.load(run_dir / "model.zip", device="cpu")
    assert first.current_task.game == "pong" and final.current_task.game == "breakout"
    assert final.task_steps[0] >= 300 and final.task_steps[1] >= 300
    obs = np.zeros((1, 4, 84, 84), dtype=np.uint8)
    action, _ = final.predict(obs, deterministic=True)
    assert action.shape == (1,) and 0 <= action[0] < 18
