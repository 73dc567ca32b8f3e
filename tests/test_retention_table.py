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


def two_seeds(tmp_path: Path, second_road_runner: tuple[int, int]) -> Path:
    """Records with the committed fine-tuning run as seed 0 and a copy as seed 1 with Road Runner's pair replaced."""
    shutil.copytree(RUN, tmp_path / "runs/finetune-s0")
    copy = shutil.copytree(RUN, tmp_path / "runs/finetune-s1")
    config = (copy / "config.yaml").read_text()
    assert "\nseed: 0\n" in config
    (copy / "config.yaml").write_text(config.replace("\nseed: 0\n", "\nseed: 1\n"))
    own, end = second_road_runner
    (copy / "retention.csv").write_text(f"after_task,road_runner,freeway\n0,{own},0\n1,{end},0\n")
    metrics = json.loads((copy / "metrics.json").read_text())  # the report reads metrics.json's full-precision matrix
    metrics["retention_matrix"] = [[own, 0.0], [end, 0.0]]
    (copy / "metrics.json").write_text(json.dumps(metrics))
    return tmp_path


def row(lines: list[str], game: str) -> dict[str, str]:
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    line = next(x for x in lines[2:] if f"| {game} |" in x)
    return dict(zip(header, (c.strip() for c in line.strip("|").split("|"))))


def test_each_seed_pair_and_the_mean_come_from_the_retention_rows(tmp_path: Path) -> None:
    cells = row(retention_table.table(two_seeds(tmp_path, (2000, 1000))), "road_runner")
    assert cells["seeds"] == "0, 1"
    assert cells["each seed (own block -> end)"] == "4040.0 -> 0.0; 2000.0 -> 1000.0"
    assert cells["after its own block"] == "3020.0 [2000.0, 4040.0]"
    assert cells["at the end"].startswith("500.0 [")
    assert cells["end minus own block"].startswith("-2520.0 [")
    assert cells["random"] == "11.5"
    assert cells["own block above random"] == "yes"


def test_a_seed_at_random_play_keeps_the_interval_from_clearing_it(tmp_path: Path) -> None:
    cells = row(retention_table.table(two_seeds(tmp_path, (5, 0))), "road_runner")
    assert cells["after its own block"].endswith("[5.0, 4040.0]")
    assert cells["own block above random"] == "no"


def test_one_seed_has_no_interval_and_no_verdict(tmp_path: Path) -> None:
    shutil.copytree(RUN, tmp_path / "runs/finetune-s0")
    cells = row(retention_table.table(tmp_path), "road_runner")
    assert cells["after its own block"] == "4040.0 (1 seed: no interval)"
    assert cells["own block above random"] == "n/a"


def test_a_directory_without_runs_is_one_line_and_status_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert retention_table.main([str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "runs" in err[0]
