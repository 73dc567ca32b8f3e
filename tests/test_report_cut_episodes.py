"""`crl report` says when a score comes from episodes that ``eval.max_steps`` cut (evals.jsonl ``cut_episodes``)."""

from __future__ import annotations

import json
from pathlib import Path

from crl.report import compute, records, render

from crl.run import rundir
from tests.test_report import BREAKOUT, PONG, run_report, write_run


def with_cuts(run_dir: Path, cut: dict[tuple[int, str], int]) -> Path:
    """Give the final evaluation of (block, game) ``cut`` cut episodes out of 2 played; every other record none."""
    records = rundir.read_jsonl(run_dir / rundir.EVALS)
    for r in records:
        r["episodes"] = 2
        r["cut_episodes"] = cut.get((r["block"], r["game"]), 0) if r["final"] else 0
    (run_dir / rundir.EVALS).write_text("".join(json.dumps(r) + "\n" for r in records))
    return run_dir


def test_cut_final_scores_are_flagged_in_tables_and_summary(tmp_path: Path) -> None:
    run = write_run(tmp_path / "a", {"pong": PONG, "breakout": BREAKOUT})
    with_cuts(run, {(1, "breakout"): 2, (0, "pong"): 1})
    assert run_report(run, "--out", tmp_path / "out") == 0
    text = (tmp_path / "out" / "report.md").read_text()
    assert "### Cut episodes" in text and "include episodes cut by `eval.max_steps`" in text
    assert "| finetune | breakout | 2 of 2 | 2 of 16 |" in text  # final evaluation (block 1); all 8 evaluations
    assert "| finetune | pong | 0 of 2 | 1 of 16 |" in text
    lines = text.splitlines()
    table = lines[lines.index("**final return**") + 2:]  # the per-game table of final returns: header, rule, rows
    header, row = table[0], next(line for line in table if line.startswith("| finetune |"))
    cells = dict(zip([c.strip() for c in header.strip("|").split("|")], [c.strip() for c in row.strip("|").split("|")]))
    assert render.CUT_MARK.strip() in cells["breakout"] and render.CUT_MARK.strip() not in cells["pong"]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["groups"][0]["runs"][0]["cut_episodes"]["final"] == {"pong": [0, 2], "breakout": [2, 2]}


def test_no_cut_no_note(tmp_path: Path) -> None:
    run = with_cuts(write_run(tmp_path / "a", {"pong": PONG, "breakout": BREAKOUT}), {})
    assert run_report(run, "--out", tmp_path / "out") == 0
    text = (tmp_path / "out" / "report.md").read_text()
    assert "Cut episodes" not in text and render.CUT_MARK.strip() not in text


def test_runs_written_before_the_field_count_no_cuts(tmp_path: Path) -> None:
    run = records.load_run(write_run(tmp_path / "a", {"pong": PONG, "breakout": BREAKOUT}))
    assert compute.cut_episodes(run)["final"] == {"pong": [0, 1], "breakout": [0, 1]}
