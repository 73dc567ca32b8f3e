"""Retention over seeds as markdown table rows: each game's return after its own block and at the end of the run.

One row per (group, game) of a sequence sweep's finished runs, with the mean over seeds and its 95% percentile
bootstrap interval (``crl.analysis.stats``), each seed's pair, what was kept (the change from the game's own block to
the end) and whether the interval after the game's own block lies above random play. The Atari page quotes these
rows, and a test regenerates them.

    python scripts/retention_table.py benchmarks/results/atari-cpu/continual

Exit status 2, with one line, when the directory holds no finished sequence runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from crl.analysis.metrics import after_last_block
from crl.analysis.normalization import random_play_score
from crl.analysis.stats import format_statistic, seed_statistic
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


def table(records: Path) -> list[str]:
    """The markdown table (header and rows): a row per group and game."""
    header = ["group", "game", "seeds", "after its own block", "at the end", "end minus own block",
              "each seed (own block -> end)", "random", "own block above random"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for group in group_runs(finished_runs(records)):
        runs = sorted(group.runs, key=lambda r: r.seed)
        for column, game in enumerate(runs[0].games):
            own = [float(after_last_block(r.retention, r.trained_at)[column]) for r in runs]
            end = [float(r.retention[-1, column]) for r in runs]
            own_stat = seed_statistic(own)
            rnd = random_play_score(game)
            above = ("n/a" if rnd is None or own_stat.ci_low is None
                     else "yes" if own_stat.ci_low > rnd else "no")
            cells = [group.label, game, ", ".join(str(r.seed) for r in runs), format_statistic(own_stat, 1),
                     format_statistic(seed_statistic(end), 1),
                     format_statistic(seed_statistic([e - o for o, e in zip(own, end)]), 1),
                     "; ".join(f"{o:.1f} -> {e:.1f}" for o, e in zip(own, end)),
                     "" if rnd is None else f"{rnd:.1f}", above]
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("records", type=Path, help="a sweep's records directory (with runs/)")
    args = parser.parse_args(argv)
    try:
        print("\n".join(table(args.records)))
    except BadInput as e:
        print(f"retention_table.py: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
