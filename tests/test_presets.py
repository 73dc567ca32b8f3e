"""Presets: the EWC Atari protocol resolves to a valid config with the paper's values, its game draw is seeded, the
scaled variant divides the schedule by S, and ``crl train --preset ... --dry-run`` prints the protocol, writing
nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from crl.run import config, presets
from crl.cli.main import build_parser, resolve_train_config

REPO = Path(__file__).resolve().parents[1]
SCALED_KEYS = ("steps_per_game", "ewc.min_task_steps", "agent.learning_starts", "agent.exploration_steps", "eval.every")


def resolved(name: str, seed: int = 0) -> dict:
    return config.flatten(config.resolve(presets.preset_overrides(name, seed)))


def test_faithful_preset_resolves_to_the_papers_values():
    cfg = resolved(presets.FAITHFUL)
    expected = {
        "method": "ewc", "steps_per_game": 5_000_000, "agent.optimizer": "rmsprop", "agent.learning_rate": 2.5e-4,
        "agent.rmsprop_alpha": 0.95, "agent.batch_size": 32, "agent.train_freq": 4, "agent.gamma": 0.99,
        "agent.double_q": True, "agent.replay": "per-task", "agent.buffer_size": 50_000,
        "agent.target_update_interval": 7_500, "agent.learning_starts": 50_000, "agent.exploration_steps": 1_000_000,
        "agent.exploration_initial_eps": 1.0, "agent.exploration_final_eps": 0.01, "network.conv_channels": [32, 64, 128],
        "network.hidden": 1024, "network.task_modulation": True, "ewc.lambda_": 400.0, "ewc.fisher_batches": 100,
        "ewc.min_task_steps": 5_000_000, "env.sticky_actions": 0.0, "env.full_action_space": True, "task_id": "fmn",
    }
    assert {key: cfg[key] for key in expected} == expected
    assert len(cfg["games"]) == 10 and len(set(cfg["games"])) == 10
    assert set(cfg["games"]) <= set(presets.EWC_ATARI_POOL)


@pytest.mark.parametrize("name", [presets.FAITHFUL, presets.SCALED, f"{presets.SCALED}-5000"])
def test_every_preset_key_is_a_config_key(name):
    valid = config.flatten(config.defaults())
    assert set(presets.preset_overrides(name, 0)) <= set(valid)


def test_pool_games_are_ale_games_with_reference_scores():
    from crl.analysis.normalization import reference_scores
    from envs import known_games

    assert len(set(presets.EWC_ATARI_POOL)) == 21
    assert set(presets.EWC_ATARI_POOL) <= set(known_games()) & set(reference_scores())


def test_game_draw_is_seeded():
    assert presets.draw_games(3) == presets.draw_games(3)
    assert presets.draw_games(0) != presets.draw_games(1)
    same_set = presets.draw_games(0, pool=("a", "b", "c", "d"), k=4)
    orders = {tuple(presets.draw_games(seed, pool=("a", "b", "c", "d"), k=4)) for seed in range(10)}
    assert sorted(same_set) == ["a", "b", "c", "d"] and len(orders) > 1  # all games of a small pool, in seeded orders
    assert presets.preset_overrides(presets.FAITHFUL, 7)["games"] == presets.draw_games(7)


@pytest.mark.parametrize("scale", [1, 20, 5_000])
def test_scaled_preset_divides_the_schedule_by_s(scale):
    faithful = presets.preset_overrides(presets.FAITHFUL, 0)
    scaled = presets.preset_overrides(f"{presets.SCALED}-{scale}", 0)
    for key in SCALED_KEYS:
        assert scaled[key] == faithful[key] // scale, key
    assert scaled["agent.target_update_interval"] == max(7_500 // scale, presets.MIN_TARGET_UPDATE_STEPS)
    assert scaled["agent.buffer_size"] == faithful["agent.buffer_size"]
    assert scaled["agent.train_freq"] == 1 and scaled["task_id"] == "oracle"
    config.resolve(scaled)


def test_scaled_preset_at_scale_one_differs_from_the_paper_only_in_the_small_budget_settings():
    faithful = presets.preset_overrides(presets.FAITHFUL, 0)
    scaled = presets.preset_overrides(f"{presets.SCALED}-1", 0)
    assert {k for k in faithful if scaled[k] != faithful[k]} == {"agent.train_freq", "task_id"}
    assert presets.preset_overrides(presets.SCALED, 0) == presets.preset_overrides(f"{presets.SCALED}-{presets.DEFAULT_SCALE}", 0)


def test_preset_names():
    assert presets.FAITHFUL in presets.PRESETS and presets.SCALED in presets.PRESETS
    assert f"{presets.SCALED}-250" in presets.PRESETS
    assert presets.PRESETS[f"{presets.SCALED}-250"] == presets.PRESETS[presets.SCALED]
    for bad in ("nope", f"{presets.SCALED}-0", f"{presets.SCALED}-x", f"{presets.SCALED}-"):
        assert bad not in presets.PRESETS
        with pytest.raises(ValueError, match="unknown preset"):
            presets.preset_overrides(bad, 0)
    assert sorted(presets.PRESETS) == sorted([presets.ATARI_DEMO, presets.ATARI_CPU, presets.MINATAR, presets.MINATAR_PLASTICITY,
                                              presets.FAITHFUL, presets.SCALED])


@pytest.mark.parametrize("name", ["atari-demo", "atari-cpu", "minatar", "minatar-plasticity"])
def test_fixed_presets_resolve_and_describe_their_keys(name: str) -> None:
    from crl.run.config import resolve

    overrides = presets.preset_overrides(name, 0)
    cfg = resolve(overrides)
    assert cfg.games == overrides["games"]
    text = presets.describe(name)
    assert all(key in text for key in overrides)


def test_describe_states_the_protocol():
    text = presets.describe(presets.FAITHFUL)
    for fact in ("Kirkpatrick et al. 2017", "lambda 400", "RMSProp lr 2.5e-4", "50,000 per task", "7,500 steps",
                 "1,000,000 steps", "Forget-Me-Not", "agent.buffer_size=500000"):
        assert fact in text, fact
    scaled = presets.describe(f"{presets.SCALED}-500")
    assert "S = 500" in scaled and "block 10,000 steps" in scaled and "negligible" in scaled


def test_flags_override_the_preset():
    args = build_parser().parse_args(["train", "--preset", presets.FAITHFUL, "--method", "finetune", "--seed", "4",
                                      "--games", "pong", "--set", "agent.buffer_size=500000"])
    cfg = resolve_train_config(args)
    assert (cfg.method, cfg.games, cfg.seed) == ("finetune", ["pong"], 4)
    assert cfg.agent.buffer_size == 500_000 and cfg.agent.optimizer == "rmsprop"


@pytest.mark.e2e  # a real run or a `crl` subprocess: seconds, not milliseconds
def test_dry_run_prints_the_protocol_and_writes_nothing(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "crl", "train", "--preset", presets.FAITHFUL, "--dry-run", "--seed", "2",
         "--run-dir", str(tmp_path / "run")],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "Kirkpatrick et al. 2017" in result.stdout and "lambda_: 400.0" in result.stdout
    assert all(f"- {game}\n" in result.stdout for game in presets.draw_games(2))
    assert list(tmp_path.iterdir()) == []
