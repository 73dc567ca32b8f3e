"""Retention over seeds as markdown table rows: each game's return after its own block and at the end of the run.

One row per (group, game) of a sequence sweep's finished runs: the mean over seeds with its 95% Student-t interval
(with two or three seeds a percentile bootstrap is little more than their range), each seed's pair, the change from
the game's own block to the end, and whether the interval after the game's own block lies above random play.
``--last K`` averages each run's last K evaluations of the block instead of its block-end evaluation alone (K = 1),
for games whose evaluations swing between levels. The Atari page quotes these rows, and a test regenerates them.

    python scripts/retention_table.py benchmarks/results/atari-cpu/continual [--last 3]

Exit status 2, with one line, when the directory holds no finished sequence runs or K is not a positive integer.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from crl.analysis.normalization import random_play_score
from crl.analysis.stats import student_t_interval
from crl.report.compute import group_runs
from crl.report.records import BadInput, Run, load_run


def finished_runs(records: Path) -> list[Run]:
    """The complete sequence runs under ``records/runs`` (partial and multi-task runs have no retention to read)."""
    runs_dir = records / "runs"
    if not runs_dir.is_dir():
        raise BadInput(f"{runs_dir} does not exist: give a sweep's records directory")
    runs = [load_run(p) for p in sorted(runs_dir.iterdir()) if (p / "retention.csv").exists()]
    runs = [r for r in runs if not r.partial and not r.joint]
    if not runs:
        raise BadInput(f"{runs_dir} holds no finished sequence runs")
    return runs


def block_score(run: Run, block: int, game: str, last: int) -> float:
    """Mean return on ``game`` over the last ``last`` evaluations made during ``block`` (its block-end one included)."""
    every = run.config["eval"]["every"]
    by_slot = {round(e["step"] / every): e["mean_return"]  # a resumed run may repeat the block-end evaluation
               for e in run.evals if e["block"] == block and e["game"] == game}  # a few steps on: the later counts
    return float(np.mean([by_slot[k] for k in sorted(by_slot)][-last:]))


def cell(values: list[float]) -> str:
    """``mean [low, high]`` with the t interval; one value: no interval."""
    if len(values) == 1:
        return f"{values[0]:.1f} (1 seed: no interval)"
    low, high = student_t_interval(values)
    return f"{np.mean(values):.1f} [{low:.1f}, {high:.1f}]"


def table(records: Path, last: int = 1) -> list[str]:
    """The markdown table (header and rows): a row per group and game."""
    header = ["group", "game", "seeds", "after its own block", "at the end", "end minus own block",
              "each seed (own block -> end)", "random", "own block above random"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for group in group_runs(finished_runs(records)):
        runs = sorted(group.runs, key=lambda r: r.seed)
        for column, game in enumerate(runs[0].games):
            own_block = [max(i for i, b in enumerate(r.trained_at) if b == column) for r in runs]
            own = [block_score(r, b, game, last) for r, b in zip(runs, own_block)]
            end = [block_score(r, r.blocks_finished - 1, game, last) for r in runs]
            rnd = random_play_score(game)
            above = ("n/a" if rnd is None or len(own) < 2
                     else "yes" if student_t_interval(own)[0] > rnd else "no")
            cells = [group.label, game, ", ".join(str(r.seed) for r in runs), cell(own), cell(end),
                     cell([e - o for o, e in zip(own, end)]),
                     "; ".join(f"{o:.1f} -> {e:.1f}" for o, e in zip(own, end)),
                     "" if rnd is None else f"{rnd:.1f}", above]
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("records", type=Path, help="a sweep's records directory (with runs/)")
    parser.add_argument("--last", default="1", help="average the last K evaluations of each block (default 1)")
    args = parser.parse_args(argv)
    try:
        if not args.last.isdigit() or int(args.last) < 1:
            raise BadInput(f"--last {args.last}: give a positive whole number of evaluations")
        print("\n".join(table(args.records, int(args.last))))
    except BadInput as e:
        print(f"retention_table: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
