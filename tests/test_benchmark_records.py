"""The MinAtar benchmark's committed records reproduce its committed report, and the results page quotes that report.

benchmarks/results/minatar/<stage>/ holds what scripts/export_records.py copied from the sweeps (records only) and
the report `crl sweep --report` wrote over them. Regenerating the report from the records alone must give the same
numbers; every table row of docs/results/minatar.md with a number in it must be a row of a regenerated report
(the tuning or the test stage's), of the cost table ``scripts/export_records.py --costs`` prints or of the tuning
choices ``scripts/tune_choice.py`` prints.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "minatar"
PAGE = ROOT / "docs" / "results" / "minatar.md"
STAGES = ("tune", "test")


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each stage's report regenerated from its committed records alone, once for the module's tests."""
    tmp_path = tmp_path_factory.mktemp("regenerated")
    return {stage: regenerate(stage, tmp_path) for stage in STAGES}


def regenerate(stage: str, tmp_path: Path) -> Path:
    """Copy a stage's records (not its report) to ``tmp_path`` and report over them; the new report directory."""
    copy = tmp_path / stage
    shutil.copytree(RESULTS / stage, copy, ignore=shutil.ignore_patterns("report"))
    proc = subprocess.run([sys.executable, "-m", "crl", "sweep", "--report", str(copy)], capture_output=True,
                          text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return copy / "report"


def numbers(summary: dict) -> list:
    """What a summary says, without the paths it was written from."""
    return [(g["label"], g["n_runs"], g["partial"], g["statistics"],
             sorted((r["seed"], r["status"], json.dumps(r["metrics"], sort_keys=True)) for r in g["runs"]))
            for g in summary["groups"]]


@pytest.mark.parametrize("stage", STAGES)
def test_committed_records_reproduce_the_committed_summary(stage, regenerated):
    committed = sorted((RESULTS / stage / "report").rglob("summary.json"))
    assert committed, f"no committed report under {RESULTS / stage}"
    new = regenerated[stage]
    for path in committed:
        again = new / path.relative_to(RESULTS / stage / "report")
        assert numbers(json.loads(again.read_text())) == numbers(json.loads(path.read_text())), path


def aggregate_rows(report_md: str) -> list[str]:
    """The table rows of report.md's section "Aggregate over runs x games (rliable)": IQM and probability of
    improvement."""
    section = report_md.split("## Aggregate over runs x games (rliable)", 1)[1].split("\n## ", 1)[0]
    return [line for line in section.splitlines() if line.startswith("| ") and any(c.isdigit() for c in line)]


@pytest.mark.parametrize("stage", STAGES)
def test_committed_records_reproduce_the_committed_aggregate(stage, regenerated):
    """The rliable aggregate (IQM with its stratified-bootstrap interval, probability of improvement over fine-tuning,
    performance profiles) is reproduced exactly, in summary.json and in report.md's tables."""
    committed = RESULTS / stage / "report"
    new = regenerated[stage]
    assert (json.loads((new / "summary.json").read_text())["aggregate"]
            == json.loads((committed / "summary.json").read_text())["aggregate"])
    rows = aggregate_rows((committed / "report.md").read_text())
    assert rows == aggregate_rows((new / "report.md").read_text())
    if stage == "test":  # three seeds per method: the tables are there
        assert any(row.startswith("| finetune | 3 | 3 | ") for row in rows), rows
        assert any(row.startswith("| progressive | 0.") for row in rows), rows  # P(progressive > finetune)


def test_every_table_row_of_the_results_page_is_regenerated(regenerated):
    generated = "\n".join((regenerated[stage] / "report.md").read_text() for stage in STAGES)
    proc = subprocess.run([sys.executable, "scripts/export_records.py", "--costs", str(RESULTS / "test")],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    generated += "\n" + proc.stdout
    proc = subprocess.run([sys.executable, "scripts/tune_choice.py", str(RESULTS / "tune")], capture_output=True,
                          text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    generated += "\n" + proc.stdout
    rows = [line for line in PAGE.read_text().splitlines() if line.startswith("| ") and any(c.isdigit() for c in line)]
    assert rows, f"{PAGE} quotes no table"
    missing = [row for row in rows if row not in generated]
    assert not missing, f"rows of {PAGE.name} that no regenerated table has: {missing[:3]}"


def test_progressive_networks_lose_nothing_to_other_games_in_the_committed_runs():
    """The issue's first sanity check, on the benchmark's own records: a game's return after a block that trained
    another game equals its return before that block, exactly (its column is frozen and evaluation is seeded)."""
    from crl.run import rundir

    runs = sorted((RESULTS / "test" / "runs").glob("progressive-s*"))
    assert len(runs) >= 3, runs
    for run in runs:
        header, rows = rundir.read_retention(run / "retention.csv")
        trained = [b["game"] for b in rundir.read_jsonl(run / "blocks.jsonl")]
        for block in range(1, len(rows)):
            for column, game in enumerate(header):
                if trained[block] != game and game in trained[:block]:
                    assert rows[block][column] == rows[block - 1][column], (run.name, block, game)
