"""End to end: two seeds trained with `crl train` on real ALE games (tiny budget), then `crl report` over both
(once as a subprocess, then in-process through ``crl.cli.main.main``).

The two trainings run concurrently with one torch thread each: on a shared 2-core machine torch's default
(a thread per core in each process) oversubscribes the cores and makes a run several times slower.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from crl.cli.main import main as cli_main

pytestmark = pytest.mark.e2e  # real games end to end: `-m "not e2e"` skips them

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--games", "Pong,Breakout", "--steps-per-game", "200", "--eval-every", "100", "--eval-episodes", "1",
        "--eval-max-steps", "50", "--n-envs", "1", "--device", "cpu",
        "--set", "agent.learning_starts=50", "--set", "agent.batch_size=8", "--set", "agent.buffer_size=1000",
        "--set", "agent.target_update_interval=100", "--set", "network.conv_channels=[4,8,8]",
        "--set", "network.hidden=32"]
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}


def crl(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "crl", *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          timeout=900, **kwargs)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> list[Path]:
    base = tmp_path_factory.mktemp("runs")
    dirs = [base / f"finetune-s{seed}" for seed in (0, 1)]
    procs = [subprocess.Popen([sys.executable, "-m", "crl", "train", *TINY, "--seed", str(seed), "--run-dir", str(d)],
                              cwd=ROOT, env=ONE_THREAD, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for seed, d in zip((0, 1), dirs)]
    for proc in procs:
        output, _ = proc.communicate(timeout=900)
        assert proc.returncode == 0, output[-2000:]
    return dirs


def test_report_over_two_seeds(runs, tmp_path):
    out = tmp_path / "report"
    result = crl("report", *runs, "--out", out)
    assert result.returncode == 0, result.stderr
    assert "group 'finetune'" in result.stdout and "seed 1, complete" in result.stdout

    for name in ("report.md", "summary.csv", "summary.json", "curves.png", "retention.png", "total_hns.png"):
        assert (out / name).is_file(), name
    for name in ("curves.png", "retention.png", "total_hns.png"):
        image = imread(out / name)
        assert image.shape[0] > 200 and image.shape[1] > 200, name
        assert image[..., :3].std() > 0.05, f"{name} is blank"

    summary = json.loads((out / "summary.json").read_text())
    assert summary["games"] == ["pong", "breakout"] and len(summary["groups"]) == 1
    group = summary["groups"][0]
    assert group["n_runs"] == 2 and not group["partial"]
    keys = ("average_final_return", "average_final_hns", "average_forgetting", "backward_transfer", "total_clipped_hns")
    written = [json.loads((run / "metrics.json").read_text()) for run in runs]
    for per_run, metrics in zip(group["runs"], written):
        for key in keys:
            assert per_run["metrics"][key] == pytest.approx(metrics[key]), key
        np.testing.assert_allclose(per_run["metrics"]["retention_matrix"], metrics["retention_matrix"])
    for key in keys:
        values = [m[key] for m in written if m[key] is not None]
        if values:
            stat = group["statistics"][key]
            assert stat["mean"] == pytest.approx(sum(values) / len(values)) and stat["n"] == len(values)
            assert stat["ci_low"] <= stat["mean"] + 1e-9 and stat["mean"] <= stat["ci_high"] + 1e-9

    text = (out / "report.md").read_text()
    assert "![evaluation curves](curves.png)" in text and "pong → breakout" in text


def test_single_run_report_lands_in_the_run_directory(runs):
    assert cli_main(["report", str(runs[0])]) == 0
    summary = json.loads((runs[0] / "report" / "summary.json").read_text())
    stat = summary["groups"][0]["statistics"]["average_final_return"]
    assert stat["n"] == 1 and stat["ci_low"] is None and stat["note"] == "1 seed: no interval"


def test_bad_input_through_the_cli(runs, tmp_path, capsys):
    assert cli_main(["report", str(runs[0]), str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"crl report: error: {tmp_path} is not a run directory (no config.yaml)"]
    assert not (tmp_path / "out").exists()
