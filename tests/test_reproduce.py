"""scripts/reproduce_ewc_atari.py: the plan of runs for a given scale (without training), resumability states, and
the comparison table from finished runs' metrics."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import yaml

from crl.run import config
from crl.cli.main import build_parser, resolve_train_config

pytestmark = pytest.mark.e2e  # real games end to end: `-m "not e2e"` skips them

REPO = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("reproduce_ewc_atari", REPO / "scripts" / "reproduce_ewc_atari.py")
reproduce = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = reproduce  # dataclasses look their module up while the class is built
spec.loader.exec_module(reproduce)


def option(argv: tuple[str, ...], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def train_config(run):
    """The config ``crl train`` resolves from a planned command (argv after ``python -m crl``)."""
    assert run.argv[1:4] == ("-m", "crl", "train")
    return resolve_train_config(build_parser().parse_args(list(run.argv[3:])))


def test_plan_for_a_scale(tmp_path):
    plan = reproduce.make_plan(100, ["finetune", "ewc", "single"], ["pong", "breakout"], [0, 1], tmp_path, "cpu",
                               cycles=3, sets=("eval.episodes=1",), python="python")
    assert [r.name for r in plan.runs] == [
        "finetune-s0", "ewc-s0", "single-pong-s0", "single-breakout-s0",
        "finetune-s1", "ewc-s1", "single-pong-s1", "single-breakout-s1",
    ]
    ewc = plan.runs[1]
    assert option(ewc.argv, "--preset") == "ewc-atari-2017-scaled-100"
    assert (option(ewc.argv, "--method"), option(ewc.argv, "--cycles"), option(ewc.argv, "--games")) == ("ewc", "3", "pong,breakout")
    assert option(ewc.argv, "--run-dir") == str(tmp_path / "runs" / "ewc-s0") and option(ewc.argv, "--seed") == "0"
    cfg = train_config(ewc)
    assert (cfg.steps_per_game, cfg.agent.learning_starts, cfg.agent.exploration_steps) == (50_000, 500, 10_000)
    assert (cfg.cycles, cfg.device, cfg.eval.episodes, cfg.ewc.min_task_steps) == (3, "cpu", 1, 50_000)

    single = plan.runs[6]
    cfg = train_config(single)
    assert (cfg.games, cfg.method, cfg.cycles, cfg.steps_per_game, cfg.seed) == (["pong"], "finetune", 1, 150_000, 1)

    report = plan.report_argv
    assert report[:4] == ("python", "-m", "crl", "report")
    sequence = [str(tmp_path / "runs" / n) for n in ("finetune-s0", "ewc-s0", "finetune-s1", "ewc-s1")]
    singles = [str(r.run_dir) for r in plan.single_runs()]
    assert list(report[4:]) == [*sequence, "--reference", *singles, "--out", str(tmp_path / "report")]


def test_plan_without_single_or_sequence_runs(tmp_path):
    plan = reproduce.make_plan(10, ["ewc"], ["pong"], [0], tmp_path)
    assert "--reference" not in plan.report_argv and len(plan.runs) == 1
    assert reproduce.make_plan(10, ["single"], ["pong", "boxing"], [0], tmp_path).report_argv is None


@pytest.mark.parametrize("kwargs, message", [
    (dict(methods=["ewc", "sgd"]), "methods must be among"),
    (dict(sets=("cycles=3",)), "set by the script"),
    (dict(scale=0), "must be positive"),
])
def test_plan_rejects_bad_input(tmp_path, kwargs, message):
    args = {**dict(scale=10, methods=["ewc"], games=["pong"], seeds=[0], out=tmp_path), **kwargs}
    with pytest.raises(ValueError, match=message):
        reproduce.make_plan(**args)


def test_run_states(tmp_path):
    plan = reproduce.make_plan(10, ["finetune", "ewc", "single"], ["pong"], [0], tmp_path)
    new, resume, done = plan.runs
    (resume.run_dir / "checkpoints").mkdir(parents=True)
    (resume.run_dir / "checkpoints" / "resume-400.zip").write_bytes(b"")
    done.run_dir.mkdir(parents=True)
    (done.run_dir / "metrics.json").write_text("{}")
    assert [reproduce.run_state(r) for r in plan.runs] == ["new", "resume", "done"]
    new.run_dir.mkdir(parents=True)
    assert reproduce.run_state(new) == "new"  # crl train accepts an empty run directory
    (new.run_dir / "checkpoints").mkdir()
    assert reproduce.run_state(new) == "stale"  # stopped before its first checkpoint: crl train would refuse it


def test_a_run_directory_of_another_experiment_is_refused(tmp_path):
    first = reproduce.make_plan(10, ["ewc"], ["pong", "boxing"], [0], tmp_path).runs[0]
    first.run_dir.mkdir(parents=True)
    config_yaml = dict(first.expected)
    (first.run_dir / "config.yaml").write_text(yaml.safe_dump(config_yaml))
    assert reproduce.run_state(first) == "stale"
    for changed in (dict(games=["pong", "breakout"]), dict(scale=20), dict(cycles=3)):
        args = {**dict(scale=10, methods=["ewc"], games=["pong", "boxing"], seeds=[0], out=tmp_path), **changed}
        other = reproduce.make_plan(**args).runs[0]
        assert other.run_dir == first.run_dir
        with pytest.raises(ValueError, match="holds another run"):
            reproduce.run_state(other)


def test_comparison_sums_the_single_game_agents(tmp_path):
    plan = reproduce.make_plan(10, ["finetune", "ewc", "single"], ["pong", "boxing"], [0, 1], tmp_path)
    scores = {"finetune-s0": 0.25, "ewc-s0": 1.5, "single-pong-s0": 0.5, "single-boxing-s0": 1.0,
              "finetune-s1": 0.75, "ewc-s1": 0.5, "single-pong-s1": -0.25, "single-boxing-s1": 0.75}
    for run in plan.runs:
        run.run_dir.mkdir(parents=True)
        (run.run_dir / "metrics.json").write_text(json.dumps({"total_clipped_hns": scores[run.name]}))
    table = reproduce.comparison(plan, 10)
    assert "| finetune | 0.500 | 0.250 | 0.750 |" in table
    assert "| ewc | 1.000 | 1.500 | 0.500 |" in table
    assert "| single-game agents, summed (ceiling) | 1.000 | 1.500 | 0.500 |" in table
    assert "sum over 2 games" in table


def test_cpu_demo_settings_are_valid_config_keys():
    valid = config.flatten(config.defaults())
    assert {item.partition("=")[0] for item in reproduce.CPU_SETTINGS} <= set(valid)
    assert set(reproduce.DEFAULT_GAMES) | set(reproduce.CPU_GAMES) <= set(reproduce.presets.EWC_ATARI_POOL)
