"""Long runs survive: SIGKILL + resume is exact, SIGTERM leaves a resumable run, corrupt checkpoints are skipped."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch as th
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from agents import ContinualDQN
from crl.run import rundir
from tests.conftest import REPO, run_crl

pytestmark = pytest.mark.e2e  # real games end to end: `-m "not e2e"` skips them

ARGS = ["--games", "Pong,Breakout", "--steps-per-game", "400", "--eval-every", "200", "--eval-episodes", "1",
        "--eval-max-steps", "40", "--n-envs", "2", "--device", "cpu", "--seed", "5", "--checkpoint-every", "100",
        "--checkpoint-replay", "--set", "agent.learning_starts=100", "--set", "agent.buffer_size=1000",
        "--set", "log_every=50", "--set", "agent.target_update_interval=100", "--set", "env.max_episode_steps=60"]


def start(run_dir: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "crl", "train", "--run-dir", str(run_dir), *ARGS],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_checkpoint(run_dir: Path, proc: subprocess.Popen, min_step: int, timeout: float = 600) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if any(int(p.stem.split("-")[1]) >= min_step for p in (run_dir / "checkpoints").glob("resume-*.sha256")):
            return
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        time.sleep(0.2)
    raise AssertionError("no checkpoint in time")


def policy_weights(path: Path) -> dict:
    return ContinualDQN.load(path, device="cpu").policy.state_dict()


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("ref") / "run"
    run_crl("train", "--run-dir", str(run_dir), *ARGS)
    return run_dir


def test_sigkill_in_second_game_then_resume_is_exact(tmp_path, uninterrupted):
    run_dir = tmp_path / "run"
    proc = start(run_dir)
    wait_for_checkpoint(run_dir, proc, min_step=600)  # block 1 (Breakout) spans steps 400-800
    proc.kill()
    proc.wait()
    points = sorted((run_dir / "checkpoints").glob("resume-*.zip"), key=lambda p: int(p.stem.split("-")[1]))
    newest = points[-1]
    newest.write_bytes(newest.read_bytes()[:1000])  # a torn write: truncated

    resumed = run_crl("train", "--resume", str(run_dir))
    assert f"checkpoint {newest} is unusable" in resumed.stderr and "checksum" in resumed.stderr

    games, rows = rundir.read_retention(run_dir / "retention.csv")
    assert len(rows) == 2  # exactly one row per task block
    evals = rundir.read_jsonl(run_dir / "evals.jsonl")
    pairs = [(e["step"], e["game"]) for e in evals]
    assert len(pairs) == len(set(pairs))
    blocks = rundir.read_jsonl(run_dir / "blocks.jsonl")
    assert [b["block"] for b in blocks] == [0, 1]

    acc = EventAccumulator(str(run_dir / "tb"))
    acc.Reload()
    for tag in acc.Tags()["scalars"]:
        steps = [e.step for e in acc.Scalars(tag)]
        assert all(a < b for a, b in zip(steps, steps[1:])), tag

    # exact resume: the same evaluations and the same final weights as the run that was never interrupted
    assert evals == rundir.read_jsonl(uninterrupted / "evals.jsonl")
    assert rows == rundir.read_retention(uninterrupted / "retention.csv")[1]
    for (name, a), b in zip(policy_weights(run_dir / "model.zip").items(), policy_weights(uninterrupted / "model.zip").values()):
        assert th.equal(a, b), name


def test_same_seed_same_evaluations(tmp_path, uninterrupted):
    """Determinism on CPU, without interruption: a second identical run writes the same evals.jsonl."""
    run_dir = tmp_path / "again"
    run_crl("train", "--run-dir", str(run_dir), *ARGS)
    assert rundir.read_jsonl(run_dir / "evals.jsonl") == rundir.read_jsonl(uninterrupted / "evals.jsonl")


def test_sigterm_leaves_a_resumable_run(tmp_path):
    run_dir = tmp_path / "run"
    proc = start(run_dir)
    wait_for_checkpoint(run_dir, proc, min_step=100)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 143, err[-2000:]
    assert f"resume with: crl train --resume {run_dir}" in err
    assert not (run_dir / "metrics.json").exists()
    run_crl("train", "--resume", str(run_dir))
    assert len(rundir.read_retention(run_dir / "retention.csv")[1]) == 2
    assert (run_dir / "metrics.json").exists() and (run_dir / "resumes.jsonl").exists()
    resume, = rundir.read_jsonl(run_dir / "resumes.jsonl")
    assert resume["step"] >= 100 and resume["replay_refilled"] is False  # --checkpoint-replay: the buffer came back
    # the signal stopped a rollout midway, so the resumed block may end off its planned step: the record says where
    blocks = rundir.read_jsonl(run_dir / "blocks.jsonl")
    final_steps = {e["block"]: e["step"] for e in rundir.read_jsonl(run_dir / "evals.jsonl") if e["final"]}
    assert [b["end_step"] for b in blocks] == [final_steps[b["block"]] for b in blocks]
    assert blocks[1]["start_step"] == blocks[0]["end_step"]


def test_resume_bad_input(tmp_path, uninterrupted):
    proc = run_crl("train", "--resume", str(tmp_path), check=False)
    assert proc.returncode == 2 and "is not a run directory" in proc.stderr
    before = sorted(p.name for p in uninterrupted.rglob("*"))
    proc = run_crl("train", "--resume", str(uninterrupted), "--set", "agent.gamma=0.9", check=False)
    assert proc.returncode == 2 and "would change the experiment (agent.gamma)" in proc.stderr and "--force" in proc.stderr
    proc = run_crl("train", "--resume", str(uninterrupted), "--games", "Pong,SpaceInvaders", "--force", check=False)
    assert proc.returncode == 2 and "cannot change games" in proc.stderr  # records are per game: not even --force
    assert sorted(p.name for p in uninterrupted.rglob("*")) == before
