"""The trainer's parts on their own (crl/run/): the step callbacks, what a checkpoint holds, trimming records on
resume, and the CLI's list of methods; no games are played."""

from __future__ import annotations

import argparse
import io
import zipfile
from pathlib import Path
from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import pytest
import torch as th

from crl.run import checkpoint, config, rundir
from crl.cli.main import build_parser
from crl.methods import METHODS, TaskInfo
from crl.run import resume_point
from crl.run.callbacks import EvaluateEvery, LogTraining, TrainingDiverged
from crl.run.state import RunState

REPO = Path(__file__).resolve().parents[1]


class ScalarLog:
    """A recorder that keeps the training scalars it is given."""

    def __init__(self) -> None:
        self.losses: list[tuple[str, float, int]] = []
        self.states: list[int] = []

    def training_loss(self, name: str, value: float, step: int) -> None:
        self.losses.append((name, value, step))

    def training_state(self, epsilon: float, task_id: int, skipped_batches: int, step: int) -> None:
        self.states.append(step)


def at_step(callback, model: SimpleNamespace, step: int) -> bool:
    model.num_timesteps = step
    return callback.on_step()


def fake_model(td_loss: float) -> SimpleNamespace:
    return SimpleNamespace(num_timesteps=0, logger=None, last_losses={"td_loss": th.tensor(td_loss)},
                           exploration_rate=0.5, current_task=TaskInfo(0, "pong"), skipped_batches=0)


def test_log_training_follows_its_schedule_and_stops_on_a_nonfinite_loss() -> None:
    log, schedule, model = ScalarLog(), RunState(next_log=100), fake_model(0.25)
    callback = LogTraining(log, schedule, every=50, stop_on_divergence=True, game="pong")
    callback.init_callback(model)
    assert [at_step(callback, model, s) for s in (60, 100, 120, 150)] == [True] * 4
    assert log.losses == [("td_loss", 0.25, 100), ("td_loss", 0.25, 150)] and log.states == [100, 150]
    assert schedule.next_log == 200  # the schedule lives in the run state, so a checkpoint carries it

    model.last_losses = {"td_loss": th.tensor(float("nan"))}
    with pytest.raises(TrainingDiverged, match="training diverged at step 200 on pong: td_loss is nan"):
        at_step(callback, model, 200)
    skipping = LogTraining(log, RunState(), every=50, stop_on_divergence=False, game="pong")
    skipping.init_callback(model)
    at_step(skipping, model, 210)  # on_divergence: skip logs the value and goes on
    assert np.isnan(log.losses[-1][1])


def test_periodic_evaluation_leaves_the_block_end_to_the_final_one() -> None:
    calls: list[int] = []
    model, schedule = fake_model(0.0), RunState(next_eval=100)
    callback = EvaluateEvery(lambda: calls.append(model.num_timesteps), schedule, every=100, end_step=300)
    callback.init_callback(model)
    for step in (50, 104, 150, 208, 300):
        at_step(callback, model, step)
    assert calls == [104, 208] and schedule.next_eval == 400


class ZipAgent:
    """What a resume point needs of an agent: a step, an action space, and a ``save`` that writes a zip."""

    def __init__(self, step: int) -> None:
        self.num_timesteps = step
        self.action_space = gym.spaces.Discrete(4)
        self.resumed_with: list[object] = []
        self.last_losses: dict[str, th.Tensor] = {}
        self.device = "cpu"

    def save(self, path: Path, extra_files: dict[str, bytes]) -> None:
        with zipfile.ZipFile(path, "w") as archive:
            for name, data in extra_files.items():
                archive.writestr(name, data)

    def resume_task(self, replay: object) -> None:
        self.resumed_with.append(replay)


def test_a_checkpoint_holds_the_run_state(tmp_path, monkeypatch) -> None:
    cfg = config.resolve({"games": "minatar/breakout,minatar/asterix"})
    state = RunState(block_index=1, block_done=40, next_eval=80, next_log=50, retention=[[1.0, 2.0]], trained_at=[0],
                     task_ids=[0], n_evaluations=3, n_eval_records=6, n_block_records=2)
    point = resume_point.save(tmp_path, ZipAgent(140), state, None, None, cfg)
    saved = checkpoint.load_trainer_state(point)
    assert sorted(saved) == sorted([
        "block_index", "block_done", "next_eval", "next_log", "retention", "retention_cut", "trained_at", "task_ids",
        "n_evaluations",
        "n_eval_records", "n_block_records", "n_plasticity_records", "fingerprint", "records", "last_losses", "rng",
        "replay_saved"])
    assert saved["fingerprint"] == rundir.fingerprint(cfg)

    agent = ZipAgent(140)
    monkeypatch.setattr(resume_point, "ContinualDQN", SimpleNamespace(load=lambda path, device: agent))
    restored, loaded, replay_restored, records = resume_point.restore(point, "cpu", None, None)
    assert restored == state and loaded is agent and replay_restored is False
    assert agent.resumed_with == [None]  # mid-block: the task goes on (without its replay, none was saved)


def test_resume_trims_the_records_written_after_the_checkpoint(tmp_path) -> None:
    rundir.append_jsonl(tmp_path / rundir.EVALS, [{"step": s} for s in range(5)])
    rundir.append_jsonl(tmp_path / rundir.BLOCKS, [{"block": b} for b in range(3)])
    rundir.write_retention(tmp_path / rundir.RETENTION, ["a", "b"], [[1.0, 2.0], [3.0, 4.0]])
    state = RunState(retention=[[1.0, 2.0]], n_eval_records=2, n_block_records=1)
    records = {name: resume_point.record_lines(tmp_path / name, n) for name, n in resume_point.record_counts(state)}
    warnings: list[str] = []
    resume_point.trim_records(tmp_path, ["a", "b"], state, records, warnings.append)
    assert rundir.read_jsonl(tmp_path / rundir.EVALS) == [{"step": 0}, {"step": 1}]
    assert rundir.read_jsonl(tmp_path / rundir.BLOCKS) == [{"block": 0}]
    assert rundir.read_retention(tmp_path / rundir.RETENTION) == (["a", "b"], [[1.0, 2.0]])
    assert warnings == [] and not (tmp_path / rundir.PLASTICITY).exists()


def test_resume_restores_records_lost_or_changed_since_the_checkpoint(tmp_path) -> None:
    """Records trimmed by content, not line count: a truncated, deleted or edited file is put back as the checkpoint
    held it, so a later kill and resume cannot duplicate an evaluation (issue #25)."""
    state = RunState(n_eval_records=3, n_block_records=1)
    records = {rundir.EVALS: b'{"step": 0}\n{"step": 1}\n{"step": 2}\n', rundir.BLOCKS: b'{"block": 0}\n',
               rundir.PLASTICITY: b""}
    rundir.append_jsonl(tmp_path / rundir.EVALS, [{"step": 0}, {"step": 9}, {"step": 2}, {"step": 3}])  # edited
    warnings: list[str] = []
    resume_point.trim_records(tmp_path, ["a"], state, records, warnings.append)  # blocks.jsonl: deleted
    assert rundir.read_jsonl(tmp_path / rundir.EVALS) == [{"step": 0}, {"step": 1}, {"step": 2}]
    assert rundir.read_jsonl(tmp_path / rundir.BLOCKS) == [{"block": 0}]
    assert len(warnings) == 2 and "evals.jsonl did not hold the 3 records" in warnings[0]


def test_method_help_names_every_registered_method() -> None:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    method = next(a for a in sub.choices["train"]._actions if "--method" in a.option_strings)
    assert method.help.split(": ", 1)[1].split(", ") == list(METHODS) and {"replay", "distill"} <= set(METHODS)


def test_scripts_import_the_installed_package() -> None:
    patched = [p.name for p in sorted((REPO / "scripts").glob("*.py")) if "sys.path" in p.read_text()]
    assert patched == []


def test_a_checkpoint_another_version_wrote_is_one_clear_error(tmp_path) -> None:
    cfg = config.resolve({"games": "minatar/breakout,minatar/asterix"})
    point = resume_point.save(tmp_path, ZipAgent(140), RunState(), None, None, cfg)
    saved = checkpoint.load_trainer_state(point)
    del saved["records"]
    blob = io.BytesIO()
    th.save(saved, blob)
    with zipfile.ZipFile(point.zip_path, "w") as archive:
        archive.writestr(checkpoint.TRAINER_STATE, blob.getvalue())
    with pytest.raises(checkpoint.CheckpointError, match="lacks records: another version of crl wrote it"):
        resume_point.restore(point, "cpu", None, None)
