"""Reliability of the pieces under `crl train`, tested without training: configuration ranges, seeds, records,
checkpoint pruning, disk-full handling, the run lock, and the CLI's one-line errors (called in-process).

The process-level cases (two writers, kill -9, resume) are in test_reliability.py.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from crl.run import checkpoint, config, rundir, seeds

from crl.cli import main as cli


def run_main(capsys, *argv: str) -> tuple[int, list[str]]:
    """``crl ARGV`` in this process: its exit status and its stderr lines."""
    status = cli.main(list(argv))
    return status, capsys.readouterr().err.strip().splitlines()


# --- case 4: every value checked for range and finiteness before anything is written ----------------------


@pytest.mark.parametrize("key, value, says", [
    ("agent.gamma", "1.5", "agent.gamma must be in [0, 1]"),
    ("agent.gamma", "-1", "agent.gamma must be in [0, 1]"),
    ("agent.exploration_final_eps", "2", "agent.exploration_final_eps must be in [0, 1]"),
    ("agent.exploration_initial_eps", "-0.1", "agent.exploration_initial_eps must be in [0, 1]"),
    ("eval.epsilon", "-3", "eval.epsilon must be in [0, 1]"),
    ("env.noop_max", "-1", "env.noop_max must be >= 0"),
    ("agent.gradient_steps", "-5", "agent.gradient_steps must be -1 or >= 1"),
    ("agent.gradient_steps", "0", "agent.gradient_steps must be -1 or >= 1"),
    ("agent.learning_rate", ".nan", "agent.learning_rate must be a finite number"),
    ("agent.learning_rate", ".inf", "agent.learning_rate must be a finite number"),
    ("agent.learning_rate", "-1e-4", "agent.learning_rate must be >= 0"),  # 0: the no-learning control
    ("agent.max_grad_norm", "0", "agent.max_grad_norm must be > 0"),
    ("agent.max_grad_norm", "nan", "agent.max_grad_norm must be a finite number"),
    ("env.frame_skip", "0", "env.frame_skip must be >= 1"),
    ("network.conv_channels", "0,0,0", "network.conv_channels must be >= 1"),
    ("network.hidden", "-1", "network.hidden must be >= 1"),
    ("n_envs", "10000", "n_envs must be in [1, 256]"),
    ("seed", "-1", "seed must be in [0, 2147483647]"),
    ("seed", str(2**31), "seed must be in [0, 2147483647]"),
    ("steps_per_game", "0", "steps_per_game must be >= 1"),
    ("fmn.bins", "1", "fmn.bins must be in [2, 256]"),
    ("fmn.downscale", "5", "fmn.downscale must divide frame_shape"),
])
def test_out_of_range_values_are_refused_before_anything_is_written(tmp_path, capsys, key, value, says):
    run_dir = tmp_path / "run"
    small = ["--steps-per-game", "8", "--n-envs", "2", "--eval-every", "0", "--eval-episodes", "1", "--device", "cpu"]
    status, err = run_main(capsys, "train", "--run-dir", str(run_dir), "--games", "minatar/breakout", *small,
                           "--set", f"{key}={value}")  # --set comes last: it overrides the small budget's flags
    assert status == 2 and len(err) == 1 and says in err[0], err
    assert not run_dir.exists()


def test_every_key_declares_its_help_and_the_defaults_are_inside_their_ranges():
    specs = config.fields_by_key()
    assert list(specs) == list(config.flatten(config.defaults()))  # one field per key, in config.yaml's order
    from crl.methods import METHODS, section_name

    # methods that tests define on the fly are not the shipped, documented keys
    exempt = {section_name(n) for n, cls in METHODS.items() if not cls.__module__.startswith("crl.methods")}
    undocumented = [k for k, f in specs.items() if not f.metadata.get("help") and k.split(".")[0] not in exempt]
    assert not undocumented, undocumented
    config.validate(config.resolve({}))  # the defaults themselves pass
    for name in ("RANGES", "CHOICES", "DEFAULTS", "POSITIVE", "NON_NEGATIVE"):
        assert not hasattr(config, name)  # no second source of defaults, ranges or choices


def test_exponent_notation_is_a_float_in_set_and_yaml(tmp_path):
    assert config.resolve(config.parse_set(["agent.learning_rate=1e-4"])).agent.learning_rate == 1e-4
    assert config.resolve({"steps_per_game": "1e4"}).steps_per_game == 10_000
    path = tmp_path / "c.yaml"
    path.write_text("agent:\n  learning_rate: 1e-4\n  optimizer_eps: 1.5E-4\n")
    cfg = config.resolve(config.load_yaml(str(path)))
    assert cfg.agent.learning_rate == 1e-4 and cfg.agent.optimizer_eps == 1.5e-4


# --- seeds: every seed the environments accept; derived seeds never overflow -----------------------------


def test_derived_seeds_are_deterministic_distinct_and_small():
    derived = [seeds.derive_seed(s, use, *parts) for s in (0, 2147, 12345, seeds.SEED_MAX)
               for use, parts in ((seeds.AGENT, ()), (seeds.TRAINING_ENV, (3, 10_000)), (seeds.EVALUATION_ENV, (7,)))]
    assert all(0 <= d < seeds.DERIVED_SPAN for d in derived)
    assert len(set(derived)) == len(derived)
    assert derived == [seeds.derive_seed(s, use, *parts) for s in (0, 2147, 12345, seeds.SEED_MAX)
                       for use, parts in ((seeds.AGENT, ()), (seeds.TRAINING_ENV, (3, 10_000)), (seeds.EVALUATION_ENV, (7,)))]
    # room above every derived seed for a vector of envs (ALE seeds env i with seed + i) and many resets
    assert seeds.DERIVED_SPAN + config.MAX_N_ENVS * 10_000 < 2**31
    assert config.fields_by_key()["seed"].metadata["range"].high == seeds.SEED_MAX


# --- case 6: records are appended only after a torn tail is cut off -------------------------------------


def test_append_after_a_torn_last_line_keeps_every_new_record(tmp_path):
    path = tmp_path / "evals.jsonl"
    path.write_text(json.dumps({"step": 1}) + "\n" + '{"step": 2, "game": "po')  # a write torn by a crash
    rundir.append_jsonl(path, [{"step": 3}, {"step": 4}])
    assert rundir.read_jsonl(path) == [{"step": 1}, {"step": 3}, {"step": 4}]
    assert path.read_text().endswith("\n")
    only_torn = tmp_path / "b.jsonl"
    only_torn.write_text('{"blo')
    rundir.append_jsonl(only_torn, [{"block": 0}])
    assert rundir.read_jsonl(only_torn) == [{"block": 0}]


def test_last_record_can_be_corrected(tmp_path):
    path = tmp_path / "blocks.jsonl"
    rundir.append_jsonl(path, [{"block": 0, "end_step": 8}, {"block": 1, "end_step": 16}])
    rundir.update_last_jsonl(path, {"end_step": 18})
    assert rundir.read_jsonl(path) == [{"block": 0, "end_step": 8}, {"block": 1, "end_step": 18}]


# --- case 3: pruning keeps the newest `keep` verified points -------------------------------------------


class FakeAgent:
    """What save_resume_point needs of an agent: a step count, an action space and ``save``."""

    def __init__(self, step: int, fail_with: OSError | None = None) -> None:
        self.num_timesteps = step
        self.action_space = gym.spaces.Discrete(4)
        self.fail_with = fail_with

    def save(self, path: Path, extra_files: dict[str, bytes]) -> None:
        tmp = Path(path).with_name(Path(path).name + ".tmp")
        tmp.write_bytes(b"weights" * 1000)  # like ContinualDQN.save: a temporary file, then a rename
        if self.fail_with is not None:
            raise self.fail_with
        os.replace(tmp, path)


def steps_of(directory: Path) -> list[int]:
    return [p.step for p in checkpoint.resume_points(directory)]


def test_pruning_never_counts_a_corrupt_point(tmp_path):
    directory = tmp_path / "checkpoints"
    directory.mkdir()
    checkpoint.save_resume_point(directory, FakeAgent(100), {}, with_replay=False, keep=1)
    newer = checkpoint.save_resume_point(directory, FakeAgent(300), {}, with_replay=False, keep=1)
    assert steps_of(directory) == [300]
    newer.zip_path.write_bytes(b"torn")  # the newest point is now corrupt (a resume goes back past it) ...
    checkpoint.save_resume_point(directory, FakeAgent(200), {}, with_replay=False, keep=1)
    # ... and the next save must keep its own good point, not count the corrupt one as "the newest kept"
    assert steps_of(directory) == [200]
    assert checkpoint.newest_good(directory).step == 200
    checkpoint.save_resume_point(directory, FakeAgent(400), {}, with_replay=False, keep=2)
    assert steps_of(directory) == [400, 200]
    assert not list(directory.glob("*.tmp"))


def test_an_incomplete_point_is_never_kept_in_place_of_a_good_one(tmp_path):
    directory = tmp_path / "checkpoints"
    directory.mkdir()
    checkpoint.save_resume_point(directory, FakeAgent(100), {}, with_replay=False, keep=2)
    checkpoint.save_resume_point(directory, FakeAgent(200), {}, with_replay=False, keep=2)
    (directory / "resume-300.zip").write_bytes(b"no checksum file: incomplete")
    checkpoint.save_resume_point(directory, FakeAgent(250), {}, with_replay=False, keep=2)
    assert steps_of(directory) == [250, 200]


# --- a full disk: one line, exit 2, no temporary files --------------------------------------------------


def disk_full(*_: object) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


def test_atomic_write_on_a_full_disk_keeps_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "retention.csv"
    path.write_text("old")
    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError) as info:
        rundir.atomic_write(path, "new")
    assert info.value.errno == errno.ENOSPC
    assert path.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["retention.csv"]


def test_checkpoint_on_a_full_disk_leaves_no_partial_point(tmp_path):
    directory = tmp_path / "checkpoints"
    directory.mkdir()
    checkpoint.save_resume_point(directory, FakeAgent(100), {}, with_replay=False, keep=2)
    before = sorted(p.name for p in directory.iterdir())
    with pytest.raises(OSError):
        checkpoint.save_resume_point(directory, FakeAgent(200, fail_with=OSError(errno.ENOSPC, "No space left on device")),
                                     {}, with_replay=False, keep=2)
    assert sorted(p.name for p in directory.iterdir()) == before


def test_train_on_a_full_disk_is_one_line_exit_2_and_removes_temporaries(tmp_path, capsys, monkeypatch):
    from crl.run import loop

    def run_out_of_space(self, resume_step=None):
        (self.run_dir / "checkpoints" / "task-0.zip.tmp").write_bytes(b"half a zip")
        (self.run_dir / "retention.csv.tmp").write_bytes(b"half")
        disk_full()

    monkeypatch.setattr(loop.ContinualTrainer, "run", run_out_of_space)
    run_dir = tmp_path / "run"
    status, err = run_main(capsys, "train", "--run-dir", str(run_dir), "--games", "minatar/breakout", "--device", "cpu")
    assert status == 2 and len(err) == 2, err  # the "training ..." line, then the error
    assert "disk full" in err[1] and f"crl train --resume {run_dir}" in err[1]
    assert not list(run_dir.rglob("*.tmp"))
    rundir.RunLock(run_dir).acquire().release()  # the lock went with the command


# --- the run directory's one writer -----------------------------------------------------------------------


def test_a_second_lock_on_a_run_directory_is_refused_until_the_first_is_released(tmp_path):
    first = rundir.RunLock(tmp_path).acquire()
    with pytest.raises(rundir.RunDirBusy, match=f"in use by another crl process \\(pid {os.getpid()}\\)"):
        rundir.RunLock(tmp_path).acquire()
    first.release()
    rundir.RunLock(tmp_path).acquire().release()
    assert rundir.is_empty(tmp_path)  # the lock file alone does not make a directory a run


def test_a_locked_run_directory_refuses_train_and_resume(tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with rundir.RunLock(run_dir):
        status, err = run_main(capsys, "train", "--run-dir", str(run_dir), "--games", "minatar/breakout", "--device", "cpu")
        assert status == 2 and len(err) == 1 and "in use by another crl process" in err[0], err
    assert rundir.is_empty(run_dir)


# --- the fingerprint ----------------------------------------------------------------------------------------


def test_fingerprint_names_changed_experiment_keys_only():
    cfg = config.resolve({"games": "minatar/breakout,minatar/asterix"})
    saved = rundir.experiment(cfg)
    assert rundir.changed_keys(saved, cfg) == []
    same_experiment = config.resolve({"games": "minatar/breakout,minatar/asterix", "cycles": 3, "device": "cpu"})
    assert rundir.fingerprint(same_experiment) == rundir.fingerprint(cfg)
    other = config.resolve({"games": "minatar/breakout,minatar/freeway", "agent.gamma": 0.9})
    assert rundir.changed_keys(saved, other) == ["agent.gamma", "games"]
    assert rundir.fingerprint(other) != rundir.fingerprint(cfg)
    newer_crl = {k: v for k, v in saved.items() if k != "agent.gamma"}  # a key the run's crl did not have
    assert rundir.changed_keys(newer_crl, cfg) == []


def test_resume_checks_config_yaml_against_run_json(tmp_path):
    cfg = config.resolve({"games": "minatar/breakout,minatar/asterix"})
    (tmp_path / "checkpoints").mkdir()
    rundir.write_run_record(tmp_path, cfg)

    def resume(edits: dict, overrides: dict | None = None, force: bool = False) -> dict:
        (tmp_path / "config.yaml").write_text(config.dump(config.resolve({**config.flatten(cfg), **edits})))
        return cli.resume_config(tmp_path, dict(overrides or {}), force)

    assert resume({}).agent.gamma == cfg.agent.gamma
    with pytest.raises(cli.UsageError, match=r"edited after the run started \(agent.gamma\).*add --force"):
        resume({"agent.gamma": 0.5})
    assert resume({"agent.gamma": 0.5}, force=True).agent.gamma == 0.5  # the user insists
    with pytest.raises(cli.UsageError, match=r"edited after the run started \(games\)") as info:
        resume({"games": "minatar/breakout,minatar/asterix,minatar/freeway"}, force=True)
    assert "--force" not in str(info.value)  # the games never change: not even with --force
    with pytest.raises(cli.UsageError, match="cannot change games"):
        resume({}, {"games": "minatar/freeway,minatar/asterix"}, force=True)
    with pytest.raises(cli.UsageError, match=r"would change the experiment \(agent.gamma\); add --force"):
        resume({}, {"agent.gamma": "0.5"})
    assert resume({}, {"cycles": 3, "device": "cpu"}).cycles == 3  # budget and device may change


# --- one clear line instead of a traceback --------------------------------------------------------------------


@pytest.mark.parametrize("where, says", [
    ("/proc/x", "cannot create run directory /proc/x"),
    ("afile/sub", "cannot create run directory"),
    ("afile", "is a file"),
])
def test_unusable_run_dir_is_one_line(tmp_path, capsys, where, says):
    (tmp_path / "afile").write_text("x")
    run_dir = Path(where) if where.startswith("/") else tmp_path / where
    status, err = run_main(capsys, "train", "--run-dir", str(run_dir), "--games", "minatar/breakout", "--device", "cpu")
    assert status == 2 and len(err) == 1 and says in err[0], err


@pytest.mark.parametrize("text, says", [
    ("", "config.yaml is empty"),
    ("- games\n- seed\n", "must hold a mapping"),
    ("games: [pong\n", "is not valid YAML"),
    ("agent:\n  gamma: 1.5\n", "config.yaml: agent.gamma must be in [0, 1]"),
])
def test_resume_with_an_unusable_config_yaml_is_one_line(tmp_path, capsys, text, says):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "config.yaml").write_text(text)
    status, err = run_main(capsys, "train", "--resume", str(tmp_path))
    assert status == 2 and len(err) == 1 and says in err[0] and "nothing to resume" in err[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoints", "config.yaml"]


def test_device_cuda_without_cuda_is_an_error(tmp_path, capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    status, err = run_main(capsys, "train", "--run-dir", str(tmp_path / "r"), "--games", "minatar/breakout", "--device", "cuda")
    assert status == 2 and len(err) == 1 and "device cuda" in err[0] and "no CUDA device" in err[0], err
    assert not (tmp_path / "r").exists()


def test_games_ale_cannot_load_are_not_offered_and_are_refused(capsys):
    from envs.games import known_games, loadable_atari_games

    unloadable = {"combat", "joust", "maze_craze", "warlords"}
    assert not unloadable & set(loadable_atari_games()) and "pong" in loadable_atari_games()
    assert not unloadable & set(known_games())
    status, err = run_main(capsys, "train", "--games", "Pong,Combat", "--dry-run")
    assert status == 2 and len(err) == 1 and "cannot load" in err[0] and "combat" in err[0], err


def test_continual_dqn_load_on_a_stock_sb3_zip_says_what_it_is(tmp_path):
    from stable_baselines3 import DQN

    from agents import ContinualDQN

    path = tmp_path / "stock.zip"
    DQN("MlpPolicy", gym.make("CartPole-v1"), learning_starts=0, buffer_size=100).save(path)
    with pytest.raises(ValueError, match="not a ContinualDQN save.*stable_baselines3.DQN.load"):
        ContinualDQN.load(path)
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a ContinualDQN save"):
        ContinualDQN.load(junk)


def test_block_budget_is_whole_rollouts():
    from crl.run.loop import block_steps

    cfg = config.resolve({"steps_per_game": 1, "n_envs": 2})
    assert block_steps(cfg) == 2 * cfg.agent.train_freq
    assert block_steps(config.resolve({"steps_per_game": 10_000, "n_envs": 4})) == 10_000
    assert block_steps(config.resolve({"steps_per_game": 10_001, "n_envs": 4})) == 10_016
    assert np.all([block_steps(config.resolve({"steps_per_game": s, "n_envs": n})) % (n * 4) == 0
                   for s in (1, 7, 300, 999) for n in (1, 3, 16)])
