"""A run records its own cost in usage.json (crl.run.rundir.UsageRecord), so a kill of the whole process tree, which
takes the sweep and its record of the attempt with it, loses at most the CPU time since the run's last checkpoint.
Real `crl train` processes on MinAtar, killed with SIGKILL and stopped with SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, run_crl

pytestmark = pytest.mark.e2e

# a resume point every 400 steps (whole rollouts of 2 envs x train_freq 4); 3,200 steps in all
RUN = ["--games", "minatar/breakout", "--steps-per-game", "3200", "--eval-every", "0", "--eval-episodes", "1",
       "--eval-max-steps", "60", "--n-envs", "2", "--device", "cpu", "--checkpoint-every", "400",
       "--set", "agent.learning_starts=100", "--set", "agent.buffer_size=1000", "--set", "log_every=400",
       "--set", "torch_threads=1"]


def start(*args: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "crl", "train", *args], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def attempts(run_dir: Path) -> list[dict]:
    path = run_dir / "usage.json"
    return json.loads(path.read_text()) if path.exists() else []


def wait_for_recorded_step(run_dir: Path, proc: subprocess.Popen, attempt: int, min_step: int) -> None:
    """Until usage.json's ``attempt``-th record reaches ``min_step`` (written right after that checkpoint)."""
    deadline = time.time() + 600
    while time.time() < deadline:
        records = attempts(run_dir)
        if len(records) > attempt and records[attempt]["step"] >= min_step:
            return
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        time.sleep(0.1)
    raise AssertionError("no checkpoint in time")


def checkpoint_steps(run_dir: Path) -> list[int]:
    return sorted(int(p.stem.split("-")[1]) for p in (run_dir / "checkpoints").glob("resume-*.sha256"))


def test_a_killed_run_keeps_its_cost_and_each_resume_adds_an_attempt(tmp_path):
    run_dir = tmp_path / "run"
    proc = start("--run-dir", str(run_dir), *RUN)
    wait_for_recorded_step(run_dir, proc, 0, 400)
    proc.send_signal(signal.SIGKILL)  # no handler runs: only what the last checkpoint wrote is left
    proc.wait()
    first, = attempts(run_dir)
    assert first["mode"] == "fresh" and first["from_step"] == 0 and "outcome" not in first, first
    assert first["cpu_s"] > 0 and first["max_rss_mib"] > 50, first
    assert first["step"] in checkpoint_steps(run_dir), (first, checkpoint_steps(run_dir))

    proc = start("--resume", str(run_dir))  # SIGTERM: the run checkpoints, records its stop and exits 143
    wait_for_recorded_step(run_dir, proc, 1, first["step"] + 400)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=300) == 143, proc.communicate()[1][-2000:]
    again, second = attempts(run_dir)
    assert again == first  # an earlier attempt is kept as it was
    assert second["mode"] == "resume" and second["from_step"] == first["step"] and second["outcome"] == "stopped"
    assert second["step"] == max(checkpoint_steps(run_dir)) and second["cpu_s"] > 0, second

    run_crl("train", "--resume", str(run_dir))
    *earlier, last = attempts(run_dir)
    assert earlier == [first, second]
    assert last["mode"] == "resume" and last["from_step"] == second["step"] and last["outcome"] == "finished"
    end_step = json.loads((run_dir / "blocks.jsonl").read_text().splitlines()[-1])["end_step"]
    assert last["step"] == end_step >= 3200 and last["cpu_s"] > 0, last  # past 3,200 if the SIGTERM came mid-rollout
    run_crl("train", "--resume", str(run_dir))  # a finished run is left untouched: no attempt is added
    assert attempts(run_dir) == [first, second, last]
