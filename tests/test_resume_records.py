"""A resumed run's records are exactly its checkpoint's (issue #25): lost or changed records are restored, a run
without a usable checkpoint restarts from step 0 instead of being stranded, TensorBoard shows each point once, and a
diverged network never writes results. Real `crl` processes on MinAtar; one uninterrupted reference run is shared."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import run_crl

pytestmark = pytest.mark.e2e

GAMES = "minatar/breakout,minatar/space_invaders"
# resume points every 160 steps (whole rollouts of 2 envs x train_freq 4) with replay, so a resume is exact;
# log_every=2 logs the training scalars right after each resume step, before the first gradient step of the attempt
RUN = ["--games", GAMES, "--steps-per-game", "320", "--eval-every", "160", "--eval-episodes", "1",
       "--eval-max-steps", "60", "--n-envs", "2", "--device", "cpu", "--set", "agent.learning_starts=100",
       "--set", "agent.buffer_size=1000", "--set", "log_every=2", "--checkpoint-every", "160", "--checkpoint-replay"]
RECORDS = ("evals.jsonl", "blocks.jsonl", "retention.csv", "metrics.json", "plasticity.jsonl")


def tb_steps(run_dir: Path) -> dict[str, list[int]]:
    """tag -> steps as TensorBoard shows them."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0, "images": 1})
    acc.Reload()
    return {t: [e.step for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("ref") / "run"
    run_crl("train", *RUN, "--run-dir", str(run_dir))
    return run_dir


def copy_of(reference: Path, tmp_path: Path) -> Path:
    run_dir = tmp_path / "run"
    shutil.copytree(reference, run_dir)
    return run_dir


def killed_after(run_dir: Path, step: int) -> None:
    """The run as a kill right after the resume point at ``step`` leaves it: later points, the end records gone."""
    for path in (run_dir / "checkpoints").glob("resume-*"):
        if int(path.name.split("-")[1].split(".")[0]) > step:
            path.unlink()
    (run_dir / "metrics.json").unlink()
    (run_dir / "model.zip").unlink()


def assert_same_as(run_dir: Path, reference: Path) -> None:
    for name in RECORDS:
        assert (run_dir / name).read_bytes() == (reference / name).read_bytes(), name
    assert tb_steps(run_dir) == tb_steps(reference)  # each point once, none lost
    assert not list(run_dir.rglob("*.tmp"))


def test_resume_restores_lost_and_truncated_records_and_tensorboard_loses_no_point(reference, tmp_path) -> None:
    run_dir = copy_of(reference, tmp_path)
    killed_after(run_dir, 480)
    lines = (run_dir / "evals.jsonl").read_text().splitlines(keepends=True)
    (run_dir / "evals.jsonl").write_text("".join(lines[:2]))  # records the checkpoint knew, lost
    (run_dir / "blocks.jsonl").unlink()
    (run_dir / "checkpoints" / "resume-160.zip.tmp").write_bytes(b"stale")  # a write a kill interrupted
    proc = run_crl("train", "--resume", str(run_dir))
    assert "evals.jsonl did not hold the 6 records of the checkpoint" in proc.stderr
    assert "blocks.jsonl did not hold the 2 records" in proc.stderr
    assert_same_as(run_dir, reference)


def test_resume_of_a_run_killed_while_model_zip_was_written_logs_the_hparams_once(reference, tmp_path) -> None:
    run_dir = copy_of(reference, tmp_path)
    (run_dir / "model.zip").unlink()
    run_crl("train", "--resume", str(run_dir))
    assert (run_dir / "model.zip").exists()
    assert_same_as(run_dir, reference)


def test_a_run_without_a_usable_checkpoint_restarts_from_step_0(reference, tmp_path) -> None:
    run_dir = copy_of(reference, tmp_path)
    killed_after(run_dir, 640)
    points = run_dir / "checkpoints"
    (points / "resume-640.zip").write_bytes((points / "resume-640.zip").read_bytes()[:1000])  # corrupt
    (points / "resume-480.sha256").unlink()  # killed between the zip and its checksum (Ctrl-C twice)
    (points / "resume-480.sha256.tmp").write_text("partial")
    proc = run_crl("train", "--resume", str(run_dir))
    notes = [line for line in proc.stderr.splitlines() if line.startswith("crl:")]
    assert len(notes) == 1 and "no usable checkpoint" in notes[0] and "restarted from step 0" in notes[0], notes
    assert_same_as(run_dir, reference)


def test_a_diverged_network_writes_no_results(tmp_path) -> None:
    run_dir = tmp_path / "run"
    # the loss is checked every log_every steps only: here never, so the weights' own check must catch it
    proc = run_crl("train", *RUN, "--set", "agent.learning_rate=1e308", "--set", "log_every=100000",
                   "--run-dir", str(run_dir), check=False)
    assert proc.returncode == 1, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("crl:")]
    assert len(errors) == 1 and "training diverged" in errors[0] and "not finite" in errors[0], errors
    assert not (run_dir / "metrics.json").exists() and not (run_dir / "model.zip").exists()


def test_resume_without_tensorboard_events_is_refused_unless_forced(reference, tmp_path) -> None:
    """A resume must not continue silently onto a TensorBoard history that lost everything before the checkpoint."""
    run_dir = copy_of(reference, tmp_path)
    killed_after(run_dir, 480)
    shutil.rmtree(run_dir / "tb")
    proc = run_crl("train", "--resume", str(run_dir), check=False)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("crl:")]
    assert proc.returncode == 2 and len(errors) == 1 and "holds no TensorBoard events" in errors[0], errors
    assert not (run_dir / "metrics.json").exists()
    run_crl("train", "--resume", str(run_dir), "--force")
    assert (run_dir / "metrics.json").read_bytes() == (reference / "metrics.json").read_bytes()


def test_a_run_whose_checkpoints_directory_was_deleted_restarts_from_step_0(reference, tmp_path) -> None:
    run_dir = copy_of(reference, tmp_path)
    killed_after(run_dir, 480)
    shutil.rmtree(run_dir / "checkpoints")
    proc = run_crl("train", "--resume", str(run_dir))
    notes = [line for line in proc.stderr.splitlines() if line.startswith("crl:")]
    assert len(notes) == 1 and "checkpoints is missing; restarted from step 0" in notes[0], notes
    assert_same_as(run_dir, reference)
