"""`crl train` and `crl report` on two real MinAtar games: every output names the score DQN-normalized, never HNS.

MinAtar has no human reference, so its scores are normalized against random play and Young & Tian 2019's DQN. The
expected values are computed here from crl/data/minatar_scores.csv as ``(return - random) / (dqn - random)``,
independently of the code under test.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from crl.run import rundir
from tests.conftest import REPO, TINY, run_crl

pytestmark = pytest.mark.e2e  # real games end to end: `-m "not e2e"` skips them

GAMES = ["minatar/breakout", "minatar/space_invaders"]
KEY = "dqn_normalized"


def reference() -> dict[str, tuple[float, float]]:
    """game -> (random, dqn), read straight from the shipped table."""
    with open(REPO / "crl" / "data" / "minatar_scores.csv", newline="") as f:
        return {row["game"]: (float(row["random"]), float(row["dqn"])) for row in csv.DictReader(f)}


def expected(game: str, mean_return: float) -> float:
    random, dqn = reference()[game]
    return (mean_return - random) / (dqn - random)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, str, Path]:
    base = tmp_path_factory.mktemp("minatar")
    run_dir, out = base / "ft", base / "report"
    train = run_crl("train", "--games", ",".join(GAMES), "--run-dir", str(run_dir), "--seed", "2", *TINY)
    report = run_crl("report", str(run_dir), "--out", str(out))
    assert "report written to" in report.stdout
    return run_dir, train.stdout, out


def test_evals_carry_the_dqn_normalized_score(run):
    run_dir, _, _ = run
    evals = rundir.read_jsonl(run_dir / rundir.EVALS)
    assert {e["game"] for e in evals} == set(GAMES) and len(evals) >= 8
    for e in evals:
        assert "hns" not in e
        assert e[KEY] == pytest.approx(expected(e["game"], e["mean_return"]))


def test_metrics_json_uses_the_family_names(run):
    run_dir, _, _ = run
    m = json.loads((run_dir / rundir.METRICS).read_text())
    assert not [k for k in m if "hns" in k]
    # a game whose final evaluation had episodes cut by eval.max_steps gets no normalized score
    final = {g: None if m["cut_final_episodes"][g] else expected(g, m["final_return"][g]) for g in GAMES}
    assert m[f"final_{KEY}"] == pytest.approx(final)
    known = [v for v in final.values() if v is not None]
    assert m[f"average_final_{KEY}"] == (pytest.approx(np.mean(known)) if known else None)
    assert m[f"total_clipped_{KEY}"] == pytest.approx(sum(min(v, 1.0) for v in known))


def test_tensorboard_tags_and_values(run):
    run_dir, _, _ = run
    acc = EventAccumulator(str(run_dir / "tb"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    wanted = {f"eval/{g}/{KEY}" for g in GAMES} | {f"eval/mean_{KEY}", f"eval/total_clipped_{KEY}",
                                                   f"hparams/average_final_{KEY}", f"hparams/total_clipped_{KEY}"}
    assert wanted <= tags, wanted - tags
    assert not [t for t in tags if "hns" in t]
    evals = rundir.read_jsonl(run_dir / rundir.EVALS)
    for game in GAMES:
        logged = {e.step: e.value for e in acc.Scalars(f"eval/{game}/{KEY}")}
        written = {e["step"]: expected(game, e["mean_return"]) for e in evals if e["game"] == game}
        assert logged.keys() == written.keys()
        assert [logged[s] for s in sorted(logged)] == pytest.approx([written[s] for s in sorted(written)], abs=1e-6)
    by_step: dict[int, list[float]] = {}
    for e in evals:
        by_step.setdefault(e["step"], []).append(expected(e["game"], e["mean_return"]))
    mean = {e.step: e.value for e in acc.Scalars(f"eval/mean_{KEY}")}
    total = {e.step: e.value for e in acc.Scalars(f"eval/total_clipped_{KEY}")}
    for step, values in by_step.items():
        assert mean[step] == pytest.approx(np.mean(values), abs=1e-6)
        assert total[step] == pytest.approx(sum(min(v, 1.0) for v in values), abs=1e-6)


def test_closing_printout_names_the_score(run):
    run_dir, stdout, _ = run
    m = json.loads((run_dir / rundir.METRICS).read_text())
    assert f"total clipped DQN-normalized score {m[f'total_clipped_{KEY}']:.3f}" in stdout
    assert "HNS" not in stdout and "human" not in stdout


def test_report_uses_the_family_names(run):
    run_dir, _, out = run
    assert (out / f"total_{KEY}.png").is_file() and not (out / "total_hns.png").exists()
    for name in ("curves.png", "retention.png"):
        assert (out / name).is_file()
    summary = json.loads((out / "summary.json").read_text())
    written = json.loads((run_dir / rundir.METRICS).read_text())
    per_run = summary["groups"][0]["runs"][0]["metrics"]
    for key in (f"average_final_{KEY}", f"total_clipped_{KEY}"):
        assert per_run[key] == pytest.approx(written[key])
        assert summary["groups"][0]["statistics"][key]["mean"] == pytest.approx(written[key])
    with open(out / "summary.csv", newline="") as f:
        metrics = {row["metric"] for row in csv.DictReader(f)}
    assert {f"average_final_{KEY}", f"total_clipped_{KEY}"} <= metrics and not [k for k in metrics if "hns" in k]
    text = (out / "report.md").read_text()
    assert " Final average DQN-normalized score |" in text and " Total clipped DQN-normalized score |" in text
    assert f"![total clipped DQN-normalized score](total_{KEY}.png)" in text
    assert "Young & Tian 2019" in text
    assert "HNS" not in text and "human-normalized" not in text and "human level" not in text
