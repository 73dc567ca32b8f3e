"""``crl report``: turn run directories into what a paper shows: figures, metric tables, seed statistics.

Runs are grouped by their resolved configuration minus the seed (and run_dir, device): a group is one configuration
over several seeds, and several groups are several methods (or parameter settings) side by side on the same game
sequence. Runs still going or stopped early are reported as far as they got and marked partial. Records
(:mod:`crl.report.records`) -> metrics and groups (:mod:`crl.report.compute`) -> CSV, JSON, figures, Markdown
(:mod:`crl.report.render`). See docs/report.md for the outputs and the definitions.

The CLI imports this module to build its parser for every command, so matplotlib and scipy (seconds to import)
come in only inside the functions that draw or aggregate.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import datetime
from pathlib import Path

from crl.report.compute import Group, build_summary, group_runs
from crl.report.records import load_inputs
from crl.report.render import figures, markdown, png_bytes, summary_csv
from crl.run import rundir


def default_out_dir(run_dirs: list[Path]) -> Path:
    """One run: RUN_DIR/report. Several: report-<timestamp> next to them (their common parent), else here."""
    if len(run_dirs) == 1:
        return run_dirs[0] / "report"
    parent = Path(os.path.commonpath([p.resolve() for p in run_dirs]))
    if parent == Path(parent.anchor):
        parent = Path.cwd()
    return parent / f"report-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def duplicate_seeds(groups: list[Group]) -> list[str]:
    """One error per seed that appears twice in a group: two runs of one configuration and seed are copies of one
    run (training is deterministic), not independent seeds, and would give a zero-width interval."""
    errors = []
    for group in groups:
        by_seed: dict[str, list[str]] = {}
        for run in group.runs:
            by_seed.setdefault(str(run.seed), []).append(str(run.path))
        for seed, paths in by_seed.items():
            if len(paths) > 1:
                errors.append(f"{' and '.join(paths)} are group {group.label!r} with the same seed {seed}: copies of "
                              "one run, not independent seeds; report one of them")
    return errors


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``crl report``."""
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories written by `crl train`")
    parser.add_argument("--out", type=Path, default=None,
                        help="output directory (default: RUN_DIR/report for one run; for several, "
                             "report-<timestamp> in their common parent directory)")
    parser.add_argument("--reference", nargs="+", default=[], metavar="RUN_DIR",
                        help="single-game runs to measure forward transfer against (Continual World's AUC)")


def main(args: argparse.Namespace) -> int:
    """Write the report; on bad input print one line per problem on stderr, write nothing, return 2."""
    runs, references, errors = load_inputs(args.run_dirs, args.reference)
    out = args.out if args.out is not None else default_out_dir([Path(d) for d in args.run_dirs])
    if out.exists() and not out.is_dir():
        errors.append(f"--out {out} exists and is not a directory")
    groups = group_runs(runs)
    errors += duplicate_seeds(groups)
    if errors:
        for line in errors:
            print(f"crl report: error: {line}", file=sys.stderr)
        return 2

    for group in groups:
        print(f"group {group.label!r}: " + ", ".join(f"{r.path} (seed {r.seed}, {r.status()})" for r in group.runs))
    summary = build_summary(groups, references)
    out.mkdir(parents=True, exist_ok=True)
    for name, fig in figures(groups, summary).items():
        rundir.atomic_write(out / name, png_bytes(fig))
    rundir.atomic_write(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    rundir.atomic_write(out / "summary.csv", summary_csv(summary))
    rundir.atomic_write(out / "report.md", markdown(groups, summary))
    print(f"report written to {out}")
    return 0
