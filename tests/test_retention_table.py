"""scripts/retention_table.py: each game's return after its own block and at the end, over seeds, from the records."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import retention_table  # noqa: E402

RUN = ROOT / "benchmarks/results/atari-cpu/continual/runs/finetune-s0"  # Road Runner 4040 -> 0, Freeway 0 -> 0


def two_seeds(tmp_path: Path, second_road_runner: tuple[float, float]) -> Path:
    """Records with the committed fine-tuning run as seed 0 and a copy as seed 1 whose block-end evaluations of
    Road Runner (after its own block, after Freeway's) score the given pair."""
    shutil.copytree(RUN, tmp_path / "runs/finetune-s0")
    copy = shutil.copytree(RUN, tmp_path / "runs/finetune-s1")
    config = (copy / "config.yaml").read_text()
    assert "\nseed: 0\n" in config
    (copy / "config.yaml").write_text(config.replace("\nseed: 0\n", "\nseed: 1\n"))
    evals = [json.loads(line) for line in (copy / "evals.jsonl").read_text().splitlines()]
    for block, score in enumerate(second_road_runner):
        last = [e for e in evals if e["block"] == block and e["game"] == "road_runner"][-1]
        last["mean_return"] = score
    (copy / "evals.jsonl").write_text("".join(json.dumps(e) + "\n" for e in evals))
    return tmp_path


def row(lines: list[str], game: str) -> dict[str, str]:
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    line = next(x for x in lines[2:] if f"| {game} |" in x)
    return dict(zip(header, (c.strip() for c in line.strip("|").split("|"))))


def test_each_seed_pair_the_mean_and_its_t_interval(tmp_path: Path) -> None:
    cells = row(retention_table.table(two_seeds(tmp_path, (4000.0, 1000.0))), "road_runner")
    assert cells["seeds"] == "0, 1"
    assert cells["each seed (own block -> end)"] == "4040.0 -> 0.0; 4000.0 -> 1000.0"
    # 2 seeds: mean +- t(0.975, 1) * s / sqrt(2) = 4020 +- 12.706 * 20
    assert cells["after its own block"] == "4020.0 [3765.9, 4274.1]"
    assert cells["at the end"] == "500.0 [-5853.1, 6853.1]"
    assert cells["end minus own block"] == "-3520.0 [-10127.2, 3087.2]"
    assert cells["random"] == "11.5"
    assert cells["own block above random"] == "yes"


def test_both_seeds_above_random_is_not_enough_when_they_disagree(tmp_path: Path) -> None:
    # 20 and 4040 are both above random play's 11.5, and a percentile bootstrap over them is [20, 4040]
    cells = row(retention_table.table(two_seeds(tmp_path, (20.0, 0.0))), "road_runner")
    assert cells["after its own block"].startswith("2030.0 [-")
    assert cells["own block above random"] == "no"


def test_one_evaluation_is_the_retention_matrix_and_last_k_averages_the_blocks_last_evaluations(tmp_path) -> None:
    shutil.copytree(RUN, tmp_path / "runs/finetune-s0")
    retention = (RUN / "retention.csv").read_text().splitlines()
    assert retention[1:] == ["0,4040,0", "1,0,0"]
    assert row(retention_table.table(tmp_path), "road_runner")["each seed (own block -> end)"] == "4040.0 -> 0.0"
    # its last three evaluations of Road Runner: 0, 0, 4040 in its own block; 40, 0, 0 in Freeway's
    assert row(retention_table.table(tmp_path, last=3), "road_runner")["each seed (own block -> end)"] == \
        "1346.7 -> 13.3"


def test_bad_input_is_one_line_and_status_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert retention_table.main([str(tmp_path)]) == 2
    assert retention_table.main([str(RUN.parents[1]), "--last", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "runs" in err[0] and "--last 0" in err[1]


def test_a_resumed_runs_repeated_block_end_evaluation_counts_once(tmp_path: Path) -> None:
    # a resume off the 8-step grid evaluates the block's end again a few steps later (progressive-s0: 400,000 and
    # 400,008); the later one stands for that evaluation
    run = shutil.copytree(RUN, tmp_path / "runs/finetune-s0")
    evals = [json.loads(line) for line in (run / "evals.jsonl").read_text().splitlines()]
    last = [e for e in evals if e["block"] == 1 and e["game"] == "road_runner"][-1]
    (run / "evals.jsonl").write_text((run / "evals.jsonl").read_text()
                                     + json.dumps({**last, "step": last["step"] + 8, "mean_return": 300.0}) + "\n")
    # Freeway's block: 40 (360,000), 0 (380,000), then 300 for the block-end slot
    assert row(retention_table.table(tmp_path, last=3), "road_runner")["each seed (own block -> end)"] == \
        "1346.7 -> 113.3"
