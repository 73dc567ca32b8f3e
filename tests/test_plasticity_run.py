"""Plasticity measures in a real run: written to plasticity.jsonl and TensorBoard (read back), plotted by the report,
kept across a resume, and free of any effect on training (bit-identical with the measures off)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

ROOT = Path(__file__).resolve().parents[1]
RUN = ["--games", "minatar/space_invaders,minatar/breakout", "--steps-per-game", "1200", "--eval-every", "600",
       "--eval-episodes", "1", "--eval-max-steps", "200", "--n-envs", "2", "--set", "agent.learning_starts=200",
       "--set", "plasticity.probe_size=64"]


def crl(*args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "crl", *args], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("plasticity")
    crl("train", *RUN, "--run-dir", str(root / "on"))
    crl("train", *RUN, "--set", "plasticity.measure=false", "--run-dir", str(root / "off"))
    return {"on": root / "on", "off": root / "off"}


@pytest.mark.e2e
def test_the_measures_are_recorded_at_every_evaluation(runs: dict[str, Path]) -> None:
    records = [json.loads(line) for line in (runs["on"] / "plasticity.jsonl").read_text().splitlines()]
    evaluations = {json.loads(line)["step"] for line in (runs["on"] / "evals.jsonl").read_text().splitlines()}
    assert [r["step"] for r in records] == sorted(evaluations)
    assert set(records[-1]["games"]) == {"minatar/space_invaders", "minatar/breakout"}
    assert set(records[0]["games"]) == {"minatar/space_invaders"}  # breakout has no probe before its block
    game = records[-1]["games"]["minatar/breakout"]
    for key in ("dormant_0", "dormant_0.025", "dormant_0.1", "dormant_0.025/conv1", "dormant_0.025/fc",
                "effective_rank", "stable_rank", "feature_norm"):
        assert key in game
    assert 0 <= game["dormant_0"] <= game["dormant_0.025"] <= game["dormant_0.1"] <= 1
    assert 1 <= game["effective_rank"] <= 64 and 1 <= game["stable_rank"] <= 64
    assert records[-1]["network"]["weight_distance"] > records[0]["network"]["weight_distance"] > 0
    assert not (runs["off"] / "plasticity.jsonl").exists()

    tb = EventAccumulator(str(runs["on"] / "tb"))
    tb.Reload()
    tags = tb.Tags()["scalars"]
    assert "plasticity/grad_norm" in tags and "plasticity/minatar/breakout/dormant_0.025" in tags
    steps = [e.step for e in tb.Scalars("plasticity/weight_distance")]
    assert steps == [r["step"] for r in records]


@pytest.mark.e2e
def test_measuring_does_not_change_training(runs: dict[str, Path]) -> None:
    for name in ("evals.jsonl", "retention.csv"):
        assert (runs["on"] / name).read_bytes() == (runs["off"] / name).read_bytes(), name


@pytest.mark.e2e
def test_the_report_plots_the_measures(runs: dict[str, Path], tmp_path: Path) -> None:
    crl("report", str(runs["on"]), "--out", str(tmp_path / "report"))
    assert (tmp_path / "report" / "plasticity.png").stat().st_size > 10_000
    text = (tmp_path / "report" / "report.md").read_text()
    assert "## Plasticity" in text
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    ends = summary["groups"][0]["runs"][0]["plasticity_measures"]
    assert [e["block"] for e in ends] == [0, 1]
    assert [sorted(e["games"]) for e in ends] == [["minatar/space_invaders"],
                                                    ["minatar/breakout", "minatar/space_invaders"]]
    # one row per probe: Space Invaders' at both block ends, Breakout's only once its probe exists
    assert "| finetune | minatar/space_invaders | 2 |" in text and "| finetune | minatar/breakout | 2 |" in text
    assert "| finetune | minatar/breakout | 1 |" not in text
